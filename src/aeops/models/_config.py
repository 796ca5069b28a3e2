"""Typed configuration of an autoencoder: the ``model`` parameter block."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class SparsityConfig(BaseModel):
    """Options of ``model.kind: sparse``: a penalty that keeps few code units active."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["l1", "kl"] = "l1"
    weight: float = Field(default=1e-3, ge=0.0)
    target: float = Field(default=0.05, gt=0.0, lt=1.0)  # KL: target mean activation


class NoiseConfig(BaseModel):
    """Options of ``model.kind: denoising``: how training inputs are corrupted."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["gaussian", "masking"] = "gaussian"
    level: float = Field(default=0.1, ge=0.0)  # gaussian: std; masking: drop probability

    @model_validator(mode="after")
    def _masking_probability(self) -> NoiseConfig:
        if self.kind == "masking" and self.level >= 1.0:
            raise ValueError(
                f"model.noise.level={self.level} is a drop probability for masking; "
                "it must be below 1"
            )
        return self


class ModelConfig(BaseModel):
    """The ``model`` block: which objective, on which network, of what size.

    ``kind`` and ``architecture`` are checked against the registries, so a typo names
    the allowed choices instead of failing deep inside PyTorch.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str = "vanilla"
    architecture: str | None = None
    latent_dim: int = Field(default=4, gt=0)
    hidden_dims: tuple[int, ...] = (32, 16)
    reconstruction_loss: Literal["mse", "l1", "bce"] = "mse"
    activation: Literal["relu", "gelu", "silu", "tanh"] = "relu"
    dropout: float = Field(default=0.2, ge=0.0, lt=1.0)
    # Share of each training batch left out of the loss: the samples that fit worst.
    # Unlabelled training data holds anomalies; fitting them teaches the model to
    # reconstruct them. Validation and scoring always use every sample.
    trim_fraction: float = Field(default=0.0, ge=0.0, lt=0.5)
    # recurrent networks
    cell: Literal["lstm", "gru"] = "lstm"
    # sparse
    sparsity: SparsityConfig = SparsityConfig()
    # denoising
    noise: NoiseConfig = NoiseConfig()
    # vae
    beta: float = Field(default=1.0, ge=0.0)
    kl_warmup_epochs: int = Field(default=0, ge=0)
    anomaly_score: Literal["reconstruction", "elbo"] = "reconstruction"
    score_samples: int = Field(default=8, ge=1)

    @field_validator("hidden_dims")
    @classmethod
    def _positive_widths(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(width <= 0 for width in value):
            raise ValueError(f"model.hidden_dims must be positive widths, got {list(value)}")
        return value

    @field_validator("kind")
    @classmethod
    def _registered_kind(cls, value: str) -> str:
        from aeops.models._registry import MODEL_REGISTRY

        if value not in MODEL_REGISTRY:
            choices = ", ".join(sorted(MODEL_REGISTRY))
            raise ValueError(f"model.kind={value!r} is not registered; choose one of: {choices}")
        return value

    @field_validator("architecture")
    @classmethod
    def _registered_architecture(cls, value: str | None) -> str | None:
        from aeops.models._registry import NETWORK_REGISTRY

        if value is not None and value not in NETWORK_REGISTRY:
            choices = ", ".join(sorted(NETWORK_REGISTRY))
            raise ValueError(
                f"model.architecture={value!r} is not registered; choose one of: {choices}"
            )
        return value


DEFAULT_ARCHITECTURE = {"tabular": "mlp", "timeseries": "recurrent", "image": "conv"}


def resolve_architecture(config: ModelConfig, data_kind: str) -> str:
    """Return the network to use: the configured one, else the default for ``data_kind``.

    Raises:
        ValueError: if no architecture is configured and ``data_kind`` has no default.
    """
    if config.architecture is not None:
        return config.architecture
    try:
        return DEFAULT_ARCHITECTURE[data_kind]
    except KeyError:
        choices = ", ".join(sorted(DEFAULT_ARCHITECTURE))
        raise ValueError(f"data.kind={data_kind!r} is unknown; choose one of: {choices}") from None
