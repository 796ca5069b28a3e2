"""What a fit reports: one record per epoch, the result, and the divergence error."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite; the message names the epoch and the likely cause."""


#: The key of :meth:`FitResult.metric_history` that holds when each epoch ended.
EPOCH_END_TIME = "epoch_end_time"


@dataclass(frozen=True)
class EpochRecord:
    """Losses and speed of one epoch, read from the device once.

    Attributes:
        epoch: 1-based epoch number.
        train_loss: mean training objective over the epoch's batches (train mode).
        validation_loss: mean objective on the validation set after the epoch (eval mode).
        samples_per_second: training rows per second of wall time, validation included.
        terms: mean of each named loss term over the epoch.
        learning_rate: the learning rate the epoch's steps used.
        finished_at: when the epoch ended, in seconds since the epoch (``time.time()``);
            NaN in records from checkpoints written before it was kept.
    """

    epoch: int
    train_loss: float
    validation_loss: float
    samples_per_second: float
    terms: dict[str, float] = field(default_factory=dict)
    learning_rate: float = math.nan
    finished_at: float = math.nan

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EpochRecord:
        """Rebuild a record from :func:`dataclasses.asdict` output (a checkpoint)."""
        return cls(
            epoch=int(values["epoch"]),
            train_loss=float(values["train_loss"]),
            validation_loss=float(values["validation_loss"]),
            samples_per_second=float(values["samples_per_second"]),
            terms={str(k): float(v) for k, v in values.get("terms", {}).items()},
            learning_rate=float(values.get("learning_rate", math.nan)),
            finished_at=float(values.get("finished_at", math.nan)),
        )


@dataclass
class FitResult:
    """What :func:`fit` learned about the run; the model itself is trained in place.

    Attributes:
        history: one record per epoch, resumed epochs included.
        best_epoch: the epoch whose weights the model holds at the end.
        best_validation_loss: that epoch's validation loss.
        stopped_early: whether early stopping ended the run.
        device: where it trained (``cpu``, ``cuda:0``).
        resumed_from_epoch: the checkpoint's epoch when the run resumed, else None.
        checkpoint_path: the run's latest checkpoint, when checkpoints are on.
    """

    history: list[EpochRecord]
    best_epoch: int
    best_validation_loss: float
    stopped_early: bool
    device: str
    resumed_from_epoch: int | None = None
    checkpoint_path: str | None = None

    def metric_history(self) -> dict[str, list[float]]:
        """Per-epoch series keyed by metric name, ready for MLflow metric history, and
        under ``EPOCH_END_TIME`` when each epoch ended (for the points' timestamps)."""
        series: dict[str, list[float]] = {
            "train_loss": [r.train_loss for r in self.history],
            "validation_loss": [r.validation_loss for r in self.history],
            "learning_rate": [r.learning_rate for r in self.history],
            "samples_per_second": [r.samples_per_second for r in self.history],
        }
        for name in self.history[0].terms if self.history else ():
            series[f"train_{name}_loss"] = [r.terms[name] for r in self.history]
        series[EPOCH_END_TIME] = [r.finished_at for r in self.history]
        return series
