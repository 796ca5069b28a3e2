"""Typed configuration of the fit loop: the ``training`` parameter block."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class EarlyStoppingConfig(BaseModel):
    """Stop when validation loss has not improved by ``min_delta`` for ``patience`` epochs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    patience: int = Field(default=15, ge=1)
    min_delta: float = Field(default=0.0, ge=0.0)


class LRScheduleConfig(BaseModel):
    """How the learning rate changes from epoch to epoch.

    ``cosine`` anneals from ``training.lr`` to ``min_lr`` over ``training.epochs``;
    ``plateau`` multiplies it by ``factor`` after ``patience`` epochs without a better
    validation loss; ``none`` keeps it constant.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["none", "cosine", "plateau"] = "none"
    min_lr: float = Field(default=0.0, ge=0.0)
    factor: float = Field(default=0.5, gt=0.0, lt=1.0)
    patience: int = Field(default=5, ge=0)


class TrainingConfig(BaseModel):
    """The ``training`` block.

    Every key has a default, so older parameter files keep working; the defaults are
    the fast path (large batches, data resident on the device, bf16 on CUDA).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(default=200, ge=1)
    # Large batches keep the device busy; small data sets should set a smaller one.
    batch_size: int = Field(default=4096, ge=1)
    lr: float = Field(default=1e-3, gt=0.0)
    weight_decay: float = Field(default=0.0, ge=0.0)
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    momentum: float = Field(default=0.9, ge=0.0, lt=1.0)
    lr_schedule: LRScheduleConfig = LRScheduleConfig()
    grad_clip_norm: float | None = Field(default=None, gt=0.0)
    early_stopping: EarlyStoppingConfig = EarlyStoppingConfig()
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    data_placement: Literal["auto", "device", "stream"] = "auto"
    device_memory_fraction: float = Field(default=0.5, gt=0.0, le=1.0)
    seed: int = Field(default=0, ge=0, lt=2**32)  # numpy, torch and Optuna take these
    deterministic: bool = False
    compile: bool = False
    checkpoint_dir: str = "data/06_models/checkpoints"
    checkpoint_every: int = Field(default=0, ge=0)
    resume: bool = False
    progress: bool = True

    @model_validator(mode="after")
    def _floor_below_rate(self) -> TrainingConfig:
        if self.lr_schedule.kind == "cosine" and self.lr_schedule.min_lr > self.lr:
            raise ValueError(
                f"training.lr_schedule.min_lr={self.lr_schedule.min_lr} is above "
                f"training.lr={self.lr}; cosine annealing goes down to min_lr"
            )
        return self
