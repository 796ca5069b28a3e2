"""The contract every autoencoder honours, so one trainer and one scorer serve them all."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor, nn

from aeops.models._config import ModelConfig
from aeops.models._losses import (
    elementwise_reconstruction_error,
    elementwise_reconstruction_loss,
    reconstruction_output,
)


def mean_over(per_sample: Tensor, kept: Tensor | None) -> Tensor:
    """The mean of ``per_sample`` (B,) over the indices ``kept`` (None: all of them)."""
    return per_sample.mean() if kept is None else per_sample[kept].mean()


@dataclass(frozen=True)
class LossOutput:
    """What a model returns from :meth:`Autoencoder.loss`.

    Attributes:
        total: the scalar the optimiser minimises (mean over the batch).
        terms: every named component of ``total``, each a batch mean, for logging.
    """

    total: Tensor
    terms: dict[str, Tensor] = field(default_factory=dict)


class Autoencoder(nn.Module):
    """An encoder, a decoder and the objective that trains them.

    Subclasses (one per ``model.kind``) override :meth:`loss` and, when the encoder's
    raw output is not the code itself (a VAE's mean and log-variance), :meth:`encode`
    and :attr:`code_multiplier`. Everything a user gets back (embeddings and anomaly
    scores) is deterministic: the same row always gives the same answer.
    """

    #: how many latent-sized blocks the encoder emits (a VAE's mean and log-variance: 2).
    code_multiplier: ClassVar[int] = 1

    def __init__(self, encoder: nn.Module, decoder: nn.Module, config: ModelConfig) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.config = config

    def on_epoch_start(self, epoch: int, epochs: int) -> None:
        """Called by the trainer before each epoch (1-based) of ``epochs``.

        Objectives with schedules (a VAE's KL warm-up) override it; the default does
        nothing. It must depend only on its arguments, so a resumed run matches.
        """

    def encode(self, x: Tensor) -> Tensor:
        """Map inputs to their deterministic embedding, shape (B, latent_dim)."""
        return self.encoder(x)

    def decode_logits(self, z: Tensor) -> Tensor:
        """Map codes to the decoder's raw output (logits when the loss is bce)."""
        return self.decoder(z)

    def reconstruct(self, x: Tensor) -> Tensor:
        """Deterministic reconstruction of ``x`` in input space."""
        logits = self.decode_logits(self.encode(x))
        return reconstruction_output(logits, self.config.reconstruction_loss)

    def reconstruction_loss(self, x: Tensor, target: Tensor | None = None) -> Tensor:
        """Per-sample reconstruction loss of ``x`` against ``target`` (default ``x``), (B,)."""
        target = x if target is None else target
        logits = self.decode_logits(self.encode(x))
        per_element = elementwise_reconstruction_loss(
            logits, target, self.config.reconstruction_loss
        )
        return per_element.flatten(start_dim=1).mean(dim=1)

    def _n_trimmed(self, batch_rows: int) -> int:
        """How many of a batch's samples the training loss leaves out (0 in eval mode)."""
        return int(batch_rows * self.config.trim_fraction) if self.training else 0

    def kept_in_loss(self, per_sample: Tensor) -> Tensor | None:
        """Indices of the samples a training loss averages over, given each sample's
        loss (B,): all but the ``trim_fraction`` share that fit worst. None (all of
        them) in eval mode or without trimming, so validation sees every sample."""
        n_dropped = self._n_trimmed(per_sample.shape[0])
        if n_dropped == 0:
            return None
        n_kept = per_sample.shape[0] - n_dropped
        return torch.topk(per_sample.detach(), n_kept, largest=False, sorted=False).indices

    def trimmed_mean(self, per_sample: Tensor) -> Tensor:
        """The mean of per-sample losses (B,) over the samples :meth:`kept_in_loss` keeps."""
        return mean_over(per_sample, self.kept_in_loss(per_sample))

    def mean_reconstruction_loss(self, x: Tensor, target: Tensor | None = None) -> Tensor:
        """The batch's reconstruction objective: the trimmed mean of per-sample losses.

        With nothing to trim (eval mode, or ``trim_fraction`` 0) that is the mean over
        every element, taken in one fused kernel: the same value (every sample has as
        many elements) with a few kernel launches fewer per step, which is what a small
        network on a GPU waits on.
        """
        if self._n_trimmed(x.shape[0]) > 0:
            return self.trimmed_mean(self.reconstruction_loss(x, target))
        logits = self.decode_logits(self.encode(x))
        target = x if target is None else target
        return elementwise_reconstruction_loss(
            logits, target, self.config.reconstruction_loss, reduction="mean"
        )

    @property
    def score_name(self) -> str:
        """What :meth:`score` measures, in words for plots and tables."""
        return "reconstruction error"

    def loss(self, x: Tensor) -> LossOutput:
        """Training objective on a batch; subclasses add their own terms."""
        reconstruction = self.mean_reconstruction_loss(x)
        return LossOutput(total=reconstruction, terms={"reconstruction": reconstruction})

    def elementwise_scores(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Embedding (B, latent_dim) and the anomaly score of every element of ``x``.

        The per-element scores have ``x``'s shape, so callers can reduce them per row,
        per image, or per time step of a window. The default is the reconstruction
        loss of the deterministic reconstruction.
        """
        z = self.encode(x)
        logits = self.decode_logits(z)
        return z, elementwise_reconstruction_error(logits, x, self.config.reconstruction_loss)

    def scores_and_errors(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """:meth:`elementwise_scores` and, apart, each element's reconstruction error.

        The two are the same tensor unless a score holds a share that no element owns
        (a VAE scored by its ELBO spreads its KL term over the elements); the errors
        then say which elements a sample's score comes from.
        """
        z, elementwise = self.elementwise_scores(x)
        return z, elementwise, elementwise

    @torch.inference_mode()
    def score(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Embedding (B, latent_dim) and per-sample anomaly score (B,) of clean ``x``.

        The score is the mean of :meth:`elementwise_scores` over each sample's elements.
        """
        z, elementwise = self.elementwise_scores(x)
        return z, elementwise.flatten(start_dim=1).mean(dim=1)
