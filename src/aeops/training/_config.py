"""Typed configuration of the fit loop: the ``training`` parameter block."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class EarlyStoppingConfig(BaseModel):
    """Stop when validation loss has not improved by ``min_delta`` for ``patience`` epochs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    patience: int = Field(default=15, ge=1)
    min_delta: float = Field(default=0.0, ge=0.0)


class TrainingConfig(BaseModel):
    """The ``training`` block."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(default=200, ge=1)
    batch_size: int = Field(default=256, ge=1)
    lr: float = Field(default=1e-3, gt=0.0)
    weight_decay: float = Field(default=0.0, ge=0.0)
    early_stopping: EarlyStoppingConfig = EarlyStoppingConfig()
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    seed: int = 0
