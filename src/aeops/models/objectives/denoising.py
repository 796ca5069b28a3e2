"""The denoising autoencoder: corrupted inputs in, clean inputs as the target."""

from __future__ import annotations

import torch
from torch import Tensor

from aeops.models._config import NoiseConfig
from aeops.models._contract import Autoencoder, LossOutput
from aeops.models._registry import register_model


def corrupt(x: Tensor, noise: NoiseConfig) -> Tensor:
    """A corrupted copy of ``x``: additive Gaussian noise, or elements masked to zero."""
    if noise.kind == "gaussian":
        return x + noise.level * torch.randn_like(x)
    keep = torch.rand_like(x) >= noise.level
    return x * keep


@register_model("denoising")
class DenoisingAutoencoder(Autoencoder):
    """Learns to undo ``model.noise``; corruption happens in training mode only.

    Validation loss, embeddings and scores see clean inputs, so evaluation, batch
    jobs and serving are deterministic.
    """

    def loss(self, x: Tensor) -> LossOutput:
        """Reconstruction loss of the corrupted input against the clean one."""
        noisy = corrupt(x, self.config.noise) if self.training else x
        reconstruction = self.mean_reconstruction_loss(noisy, target=x)
        return LossOutput(total=reconstruction, terms={"reconstruction": reconstruction})
