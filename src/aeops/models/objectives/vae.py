"""The variational autoencoder (beta-VAE) with optional KL warm-up."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from aeops.models._config import ModelConfig
from aeops.models._contract import Autoencoder, LossOutput, mean_over
from aeops.models._losses import (
    elementwise_reconstruction_error,
    elementwise_reconstruction_loss,
    reconstruction_output,
)
from aeops.models._registry import register_model

# Seed of the fixed draws that make ELBO scores deterministic.
_SCORE_SEED = 0


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per sample, summed over latent units: (B, L) -> (B,)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1)


@register_model("vae")
class VariationalAutoencoder(Autoencoder):
    """Gaussian encoder, reparameterised sample, loss = reconstruction + beta * KL.

    Both terms are per-sample sums (over input elements and latent units) averaged
    over the batch. With ``reconstruction_loss: mse`` the reconstruction term is the
    sum of squared errors: the negative log-likelihood, up to a constant, of a Gaussian
    of variance 1/2 (robust scaling leaves a normal feature with variance 0.55), so
    the loss is that likelihood's negative ELBO; ``l1`` is a unit Laplace's and
    ``bce`` a Bernoulli's. ``beta``
    ramps from 0 over ``kl_warmup_epochs`` in training; validation always uses the
    full ``beta``, so early stopping compares like with like. The embedding is the
    posterior mean, so it is deterministic.
    """

    code_multiplier: ClassVar[int] = 2

    def __init__(self, encoder: nn.Module, decoder: nn.Module, config: ModelConfig) -> None:
        super().__init__(encoder, decoder, config)
        self._beta_now = config.beta if config.kl_warmup_epochs == 0 else 0.0

    def on_epoch_start(self, epoch: int, epochs: int) -> None:
        """Ramp beta linearly over the warm-up epochs."""
        warmup = self.config.kl_warmup_epochs
        self._beta_now = self.config.beta * min(1.0, epoch / warmup) if warmup else self.config.beta

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-variance of q(z|x), each (B, latent_dim)."""
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar.clamp(-30.0, 20.0)

    def encode(self, x: Tensor) -> Tensor:
        """The posterior mean."""
        return self.posterior(x)[0]

    def loss(self, x: Tensor) -> LossOutput:
        """Negative ELBO with the current beta (the full beta in eval mode)."""
        mu, logvar = self.posterior(x)
        z = mu + (0.5 * logvar).exp() * torch.randn_like(mu) if self.training else mu
        per_element = elementwise_reconstruction_loss(
            self.decode_logits(z), x, self.config.reconstruction_loss
        )
        per_sample_reconstruction = per_element.flatten(start_dim=1).sum(dim=1)
        per_sample_kl = gaussian_kl(mu, logvar)
        beta = self._beta_now if self.training else self.config.beta
        # Trimming ranks samples by their whole negative ELBO.
        kept = self.kept_in_loss(per_sample_reconstruction + beta * per_sample_kl)
        reconstruction = mean_over(per_sample_reconstruction, kept)
        kl = mean_over(per_sample_kl, kept)
        return LossOutput(
            total=reconstruction + beta * kl, terms={"reconstruction": reconstruction, "kl": kl}
        )

    @property
    def score_name(self) -> str:
        """The negative ELBO, or the reconstruction error of the posterior mean."""
        return "negative ELBO" if self.config.anomaly_score == "elbo" else super().score_name

    def elementwise_scores(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Reconstruction error of the mean, or the negative ELBO spread over elements.

        With ``anomaly_score: elbo`` each element's score is its reconstruction loss
        averaged over ``score_samples`` draws plus the sample's KL divided by the number
        of elements, so a sample's scores sum to its negative ELBO. The draws are fixed
        (seeded), so the same row always gets the same score, whatever the batch.
        """
        return self.scores_and_errors(x)[:2]

    def scores_and_errors(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """With ``anomaly_score: elbo``, the errors are the reconstruction losses
        averaged over the draws, without the KL share every element's score carries."""
        if self.config.anomaly_score == "reconstruction":
            mean_code, errors = super().elementwise_scores(x)
            return mean_code, errors, errors
        mu, logvar = self.posterior(x)
        generator = torch.Generator(device="cpu").manual_seed(_SCORE_SEED)
        draws = torch.randn(self.config.score_samples, mu.shape[1], generator=generator)
        draws = draws.to(mu.device, mu.dtype)
        std = (0.5 * logvar).exp()
        total = torch.zeros_like(x)
        for eps in draws:
            logits = self.decode_logits(mu + std * eps)
            total += elementwise_reconstruction_error(logits, x, self.config.reconstruction_loss)
        errors = total / len(draws)
        n_elements = x[0].numel()
        kl = gaussian_kl(mu, logvar).view(-1, *([1] * (x.dim() - 1)))
        return mu, errors + kl / n_elements, errors

    @torch.inference_mode()
    def generate(
        self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0
    ) -> Tensor:
        """Decode ``n`` draws from the prior N(0, temperature² I) into input space.

        The draws come from ``generator`` on the CPU, so a seed gives the same samples
        on any device. A temperature below 1 trades variety for typical samples.
        """
        device = next(self.parameters()).device
        z = torch.randn(n, self.config.latent_dim, generator=generator) * temperature
        return reconstruction_output(
            self.decode_logits(z.to(device)), self.config.reconstruction_loss
        )
