"""Convolutional encoder and transposed-convolution decoder for images (B, C, H, W)."""

from __future__ import annotations

from torch import Tensor, nn

from aeops.models._config import ModelConfig
from aeops.models._registry import ModelConfigError, register_network
from aeops.models.networks._common import activation_and_dropout


def _halved(size: int) -> int:
    """Spatial size after a 3x3 convolution with stride 2 and padding 1."""
    return (size + 1) // 2


class _ConvDecoder(nn.Module):
    """Linear to the encoder's last feature map, then stride-2 transposed convolutions.

    ``output_padding`` is chosen per layer so that every feature map mirrors the
    encoder's size exactly, for any H and W (odd sizes included).
    """

    def __init__(
        self,
        latent_dim: int,
        channels: list[int],
        sizes: list[tuple[int, int]],
        out_channels: int,
        config: ModelConfig,
    ) -> None:
        super().__init__()
        self._start = (channels[-1], *sizes[-1])  # (C_K, h_K, w_K)
        self.project = nn.Sequential(
            nn.Linear(latent_dim, channels[-1] * sizes[-1][0] * sizes[-1][1]),
            activation_and_dropout(config),
        )
        widths = [*reversed(channels), out_channels]  # C_K ... C_1, C_in
        maps = list(reversed(sizes))  # s_K ... s_0 = (H, W)
        layers: list[nn.Module] = []
        for index in range(len(channels)):
            (h_in, w_in), (h_out, w_out) = maps[index], maps[index + 1]
            padding = (h_out - (2 * h_in - 1), w_out - (2 * w_in - 1))  # 0 or 1 each
            layers.append(
                nn.ConvTranspose2d(
                    widths[index],
                    widths[index + 1],
                    3,
                    stride=2,
                    padding=1,
                    output_padding=padding,
                )
            )
            if index < len(channels) - 1:
                layers.append(activation_and_dropout(config))
        self.up = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        """(B, latent_dim) -> (B, C, H, W)."""
        return self.up(self.project(z).view(z.shape[0], *self._start))


@register_network("conv")
def build_conv(
    input_shape: tuple[int, ...], config: ModelConfig, code_dim: int
) -> tuple[nn.Module, nn.Module]:
    """Stride-2 3x3 convolutions with ``hidden_dims`` channels, then a linear code.

    Raises:
        ValueError: if the input is not (C, H, W), too small for the layers, or
            ``hidden_dims`` is empty.
    """
    if len(input_shape) != 3:
        raise ModelConfigError(
            f"model.architecture='conv' takes images (C, H, W), got shape {input_shape}; "
            "use 'mlp' for rows or 'recurrent' for windows"
        )
    channels_in, height, width = input_shape
    channels = list(config.hidden_dims)
    if not channels:
        raise ModelConfigError(
            "model.architecture='conv' needs at least one convolution: model.hidden_dims "
            "lists their channels, e.g. [32, 64]"
        )
    sizes = [(height, width)]
    for _ in channels:
        sizes.append((_halved(sizes[-1][0]), _halved(sizes[-1][1])))
    # A layer after the first needs more than one pixel to halve; a side of one pixel
    # (an H x 1 image) stays one.
    useful = 1 + sum(max(size) > 1 for size in sizes[1:-1])
    if len(channels) > useful:
        raise ModelConfigError(
            f"images of {height}x{width} are too small for {len(channels)} stride-2 layers "
            f"(model.hidden_dims={channels}): they are down to 1x1 after {useful}; use at "
            f"most {useful} layer{'s' if useful > 1 else ''}"
        )
    layers: list[nn.Module] = []
    for width_in, width_out in zip([channels_in, *channels], channels, strict=False):
        layers += [nn.Conv2d(width_in, width_out, 3, stride=2, padding=1)]
        layers.append(activation_and_dropout(config))
    h, w = sizes[-1]
    encoder = nn.Sequential(*layers, nn.Flatten(), nn.Linear(channels[-1] * h * w, code_dim))
    decoder = _ConvDecoder(config.latent_dim, channels, sizes, channels_in, config)
    return encoder, decoder
