"""Optimisers and learning-rate schedules named by ``training.optimizer`` and ``lr_schedule``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LRScheduler, ReduceLROnPlateau

from aeops.training._config import TrainingConfig

Scheduler = LRScheduler | ReduceLROnPlateau


def build_optimizer(parameters: Iterable[nn.Parameter], config: TrainingConfig) -> Optimizer:
    """The optimiser ``config.optimizer`` names, with fused kernels where PyTorch has them.

    Fused kernels update every parameter in one launch, and on CUDA they let an fp16
    GradScaler skip a step without reading ``found_inf`` on the host, so a step never
    waits for the device. Older PyTorch builds without a fused kernel for the device
    fall back to the default implementation.

    Raises:
        ValueError: if the optimiser name is unknown.
    """
    params = list(parameters)
    kwargs: dict[str, Any] = {"lr": config.lr, "weight_decay": config.weight_decay}
    optimizer_cls: type[Optimizer]
    if config.optimizer == "adam":
        optimizer_cls = torch.optim.Adam
    elif config.optimizer == "adamw":
        optimizer_cls = torch.optim.AdamW
    elif config.optimizer == "sgd":
        optimizer_cls = torch.optim.SGD
        kwargs["momentum"] = config.momentum
    else:
        raise ValueError(
            f"training.optimizer={config.optimizer!r} is unknown; choose one of: adam, adamw, sgd"
        )
    try:
        return optimizer_cls(params, fused=True, **kwargs)
    except (RuntimeError, TypeError):
        return optimizer_cls(params, **kwargs)


def build_scheduler(optimizer: Optimizer, config: TrainingConfig) -> Scheduler | None:
    """The per-epoch learning-rate schedule ``config.lr_schedule`` names, or None."""
    schedule = config.lr_schedule
    if schedule.kind == "cosine":
        return CosineAnnealingLR(optimizer, T_max=config.epochs, eta_min=schedule.min_lr)
    if schedule.kind == "plateau":
        # Any lower validation loss counts as better, as for early stopping with
        # min_delta 0 (PyTorch's default asks for 0.01% lower). The rate falls once
        # more than `patience` epochs in a row bring none (PyTorch's rule).
        return ReduceLROnPlateau(
            optimizer,
            mode="min",
            factor=schedule.factor,
            patience=schedule.patience,
            min_lr=schedule.min_lr,
            threshold=0.0,
            threshold_mode="abs",
        )
    return None


def step_scheduler(scheduler: Scheduler | None, validation_loss: float) -> None:
    """Advance the schedule by one epoch; plateau reads the epoch's validation loss.

    ``validation_loss`` is the float already read at the epoch's one host sync, so
    stepping adds no sync of its own.
    """
    if isinstance(scheduler, ReduceLROnPlateau):
        scheduler.step(validation_loss)
    elif scheduler is not None:
        scheduler.step()


def current_lr(optimizer: Optimizer) -> float:
    """The learning rate of the first parameter group (all groups share it here)."""
    return float(optimizer.param_groups[0]["lr"])
