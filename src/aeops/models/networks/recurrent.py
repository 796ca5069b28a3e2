"""Sequence-to-sequence LSTM/GRU encoder and decoder for windows (B, T, F).

``model.dropout`` applies between stacked layers and to the RNN outputs the linear
code and read-out take; ``model.activation`` does not apply (the cells have their own).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from aeops.models._config import ModelConfig
from aeops.models._registry import ModelConfigError, register_network


def _rnn(config: ModelConfig, input_size: int) -> nn.Module:
    if not config.hidden_dims:
        raise ModelConfigError(
            "model.architecture='recurrent' needs at least one layer: model.hidden_dims "
            "gives the width (its first entry) and the depth (its length), e.g. [64]"
        )
    cell = nn.LSTM if config.cell == "lstm" else nn.GRU
    return cell(
        input_size=input_size,
        hidden_size=config.hidden_dims[0],
        num_layers=len(config.hidden_dims),
        batch_first=True,
        dropout=config.dropout if len(config.hidden_dims) > 1 else 0.0,
    )


class _SequenceEncoder(nn.Module):
    """Runs the RNN over the window and maps its last hidden state to the code."""

    def __init__(self, n_features: int, config: ModelConfig, code_dim: int) -> None:
        super().__init__()
        self.rnn = _rnn(config, n_features)
        self.dropout = config.dropout
        self.head = nn.Linear(config.hidden_dims[0], code_dim)

    def forward(self, x: Tensor) -> Tensor:
        """(B, T, F) -> (B, code_dim)."""
        outputs, _ = self.rnn(x)  # (B, T, H)
        return self.head(F.dropout(outputs[:, -1], self.dropout, self.training))


class _SequenceDecoder(nn.Module):
    """Feeds the code at every step of an RNN and reads out each step's features."""

    def __init__(self, length: int, n_features: int, config: ModelConfig) -> None:
        super().__init__()
        self.length = length
        self.rnn = _rnn(config, config.latent_dim)
        self.dropout = config.dropout
        self.readout = nn.Linear(config.hidden_dims[0], n_features)

    def forward(self, z: Tensor) -> Tensor:
        """(B, latent_dim) -> (B, T, F)."""
        steps = z.unsqueeze(1).expand(-1, self.length, -1).contiguous()  # (B, T, L)
        outputs, _ = self.rnn(steps)  # (B, T, H)
        return self.readout(F.dropout(outputs, self.dropout, self.training))


@register_network("recurrent")
def build_recurrent(
    input_shape: tuple[int, ...], config: ModelConfig, code_dim: int
) -> tuple[nn.Module, nn.Module]:
    """An LSTM (or GRU, ``model.cell``) autoencoder over windows of shape (T, F).

    The RNN width is ``hidden_dims[0]`` and its depth ``len(hidden_dims)``.

    Raises:
        ValueError: if the input is not (T, F).
    """
    if len(input_shape) != 2:
        raise ModelConfigError(
            f"model.architecture='recurrent' takes windows (T, F), got shape {input_shape}; "
            "use 'mlp' for rows or 'conv' for images"
        )
    length, n_features = input_shape
    return _SequenceEncoder(n_features, config, code_dim), _SequenceDecoder(
        length, n_features, config
    )
