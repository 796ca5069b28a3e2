"""The fit loop: data resident on the device, index-sliced batches, early stopping."""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from aeops.models import Autoencoder
from aeops.training._config import TrainingConfig
from aeops.training._device import autocast, resolve_device, resolve_precision

logger = logging.getLogger(__name__)


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass(frozen=True)
class EpochRecord:
    """Losses and speed of one epoch, read from the device once."""

    epoch: int
    train_loss: float
    validation_loss: float
    samples_per_second: float
    terms: dict[str, float] = field(default_factory=dict)


@dataclass
class FitResult:
    """What :func:`fit` learned about the run; the model itself is trained in place."""

    history: list[EpochRecord]
    best_epoch: int
    best_validation_loss: float
    stopped_early: bool
    device: str

    def metric_history(self) -> dict[str, list[float]]:
        """Per-epoch series keyed by metric name, ready for MLflow metric history."""
        series: dict[str, list[float]] = {
            "train_loss": [r.train_loss for r in self.history],
            "validation_loss": [r.validation_loss for r in self.history],
            "samples_per_second": [r.samples_per_second for r in self.history],
        }
        for name in self.history[0].terms if self.history else ():
            series[f"train_{name}_loss"] = [r.terms[name] for r in self.history]
        return series


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch's global RNGs and return a generator for batch order."""
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def _as_device_tensor(array: np.ndarray | Tensor, device: torch.device) -> Tensor:
    tensor = torch.as_tensor(array, dtype=torch.float32)
    return tensor.to(device, non_blocking=True)


def _evaluate_loss(
    model: Autoencoder,
    data: Tensor,
    batch_size: int,
    device: torch.device,
    dtype: torch.dtype | None,
) -> Tensor:
    """Mean training objective over ``data`` in eval mode, kept on the device."""
    model.eval()
    total = torch.zeros((), device=device)
    with torch.no_grad():
        for start in range(0, data.shape[0], batch_size):
            batch = data[start : start + batch_size]
            with autocast(device, dtype):
                total += model.loss(batch).total.float() * batch.shape[0]
    return total / data.shape[0]


def fit(
    model: Autoencoder,
    train: np.ndarray | Tensor,
    validation: np.ndarray | Tensor,
    config: TrainingConfig,
    on_epoch_end: Callable[[EpochRecord], None] | None = None,
) -> FitResult:
    """Train ``model`` in place on ``train``, stopping early on ``validation`` loss.

    The whole training and validation sets live on the device as one tensor each;
    batches are slices of a random permutation, and losses are summed on the device
    and read once per epoch, so there is no host sync per step. When early stopping
    is on, the best weights seen are restored at the end.

    Args:
        model: an untrained (or partly trained) autoencoder.
        train: training inputs, (N, *input_shape) float32.
        validation: validation inputs, (M, *input_shape); must be non-empty.
        config: the ``training`` block.
        on_epoch_end: called with each epoch's record (progress, logging).

    Returns:
        The history and where the best epoch was.

    Raises:
        ValueError: if either set is empty.
        TrainingDivergedError: if a loss becomes NaN or infinite.
    """
    if len(train) == 0 or len(validation) == 0:
        raise ValueError(
            f"fit needs non-empty train and validation sets, got {len(train)} and "
            f"{len(validation)} rows"
        )
    generator = seed_everything(config.seed)
    device = resolve_device(config.device)
    dtype = resolve_precision(config.precision, device)
    model.to(device)
    train_t = _as_device_tensor(train, device)
    validation_t = _as_device_tensor(validation, device)
    n_train = train_t.shape[0]
    batch_size = min(config.batch_size, n_train)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)

    history: list[EpochRecord] = []
    best_loss = math.inf
    best_epoch = 0
    best_state = copy.deepcopy(model.state_dict())
    stale_epochs = 0
    stopped_early = False
    logger.info(
        "Training %s/%s on %s (%s) for up to %d epochs, %d rows, batch %d",
        model.config.kind,
        model.config.architecture,
        device,
        dtype or torch.float32,
        config.epochs,
        n_train,
        batch_size,
    )
    for epoch in range(1, config.epochs + 1):
        model.on_epoch_start(epoch, config.epochs)
        model.train()
        started = time.perf_counter()
        order = torch.randperm(n_train, generator=generator).to(device)
        loss_sum = torch.zeros((), device=device)
        term_sums: dict[str, Tensor] = {}
        for start in range(0, n_train, batch_size):
            batch = train_t[order[start : start + batch_size]]
            with autocast(device, dtype):
                output = model.loss(batch)
            optimizer.zero_grad(set_to_none=True)
            output.total.backward()
            optimizer.step()
            weight = batch.shape[0]
            loss_sum += output.total.detach().float() * weight
            for name, value in output.terms.items():
                term_sums[name] = term_sums.get(name, 0) + value.detach().float() * weight
        validation_loss_t = _evaluate_loss(model, validation_t, batch_size, device, dtype)

        # The one host sync of the epoch.
        train_loss = float(loss_sum) / n_train
        validation_loss = float(validation_loss_t)
        elapsed = time.perf_counter() - started
        record = EpochRecord(
            epoch=epoch,
            train_loss=train_loss,
            validation_loss=validation_loss,
            samples_per_second=n_train / elapsed if elapsed > 0 else math.inf,
            terms={name: float(total) / n_train for name, total in term_sums.items()},
        )
        if not (math.isfinite(train_loss) and math.isfinite(validation_loss)):
            raise TrainingDivergedError(
                f"loss became {train_loss if not math.isfinite(train_loss) else validation_loss}"
                f" at epoch {epoch}: lower training.lr (now {config.lr}) or check that the "
                "inputs are scaled (scaling.method) and finite"
            )
        history.append(record)
        if on_epoch_end is not None:
            on_epoch_end(record)

        if validation_loss < best_loss - config.early_stopping.min_delta:
            best_loss, best_epoch, stale_epochs = validation_loss, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale_epochs += 1
        if config.early_stopping.enabled and stale_epochs >= config.early_stopping.patience:
            stopped_early = True
            logger.info(
                "Early stop at epoch %d: best validation loss %.6g at epoch %d",
                epoch,
                best_loss,
                best_epoch,
            )
            break

    if config.early_stopping.enabled:
        model.load_state_dict(best_state)
    else:
        best_epoch, best_loss = history[-1].epoch, history[-1].validation_loss
    model.eval()
    return FitResult(
        history=history,
        best_epoch=best_epoch,
        best_validation_loss=best_loss,
        stopped_early=stopped_early,
        device=str(device),
    )
