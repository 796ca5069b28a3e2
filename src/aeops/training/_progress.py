"""Training progress: a bar for a person at a terminal, a log line now and then in a
log (a job under nohup, CI, a scheduler)."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Callable, Iterator

from aeops.training._records import EpochRecord

ProgressUpdate = Callable[[EpochRecord], None]

logger = logging.getLogger(__name__)

#: Seconds between two progress lines in a log: a short run logs none, a long one
#: shows it is alive without a line per epoch.
LOG_EVERY_SECONDS = 30.0


def _ignore(record: EpochRecord) -> None:
    """The update used when no progress is shown."""


def _log_lines(epochs: int, first_epoch: int) -> ProgressUpdate:
    """An update that logs the latest epoch at most every :data:`LOG_EVERY_SECONDS`,
    with the time the epochs left would take at the pace so far."""
    started = last = time.monotonic()

    def update(record: EpochRecord) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last < LOG_EVERY_SECONDS:
            return
        last = now
        left = (now - started) / (record.epoch - first_epoch + 1) * (epochs - record.epoch)
        logger.info(
            "Epoch %d of %d: train %.4g, validation %.4g, lr %.2g, %.0f samples/s; "
            "about %s left at this pace (early stopping may end it sooner)",
            record.epoch,
            epochs,
            record.train_loss,
            record.validation_loss,
            record.learning_rate,
            record.samples_per_second,
            _duration(left),
        )

    return update


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {seconds:02d}s"


@contextlib.contextmanager
def epoch_progress(enabled: bool, epochs: int, first_epoch: int) -> Iterator[ProgressUpdate]:
    """Yield a function that advances a rich progress bar by one epoch.

    The bar goes to stderr and only when stderr is a terminal, so logs, CI output and
    kedro runs in the background stay clean: there, a log line gives the latest epoch
    every :data:`LOG_EVERY_SECONDS` instead. rich is imported only for a bar, which
    keeps the training package importable where rich is absent.

    Args:
        enabled: ``training.progress``.
        epochs: the planned number of epochs.
        first_epoch: the epoch the run starts at (after a resume, not 1).
    """
    if not enabled:
        yield _ignore
        return
    if not sys.stderr.isatty():
        yield _log_lines(epochs, first_epoch)
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    progress = Progress(
        TextColumn("[bold]training"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[losses]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    )
    task = progress.add_task("training", total=epochs, completed=first_epoch - 1, losses="epochs")

    def update(record: EpochRecord) -> None:
        progress.update(
            task,
            completed=record.epoch,
            losses=(
                f"train {record.train_loss:.4g}  val {record.validation_loss:.4g}  "
                f"lr {record.learning_rate:.2g}  {record.samples_per_second:,.0f} samples/s"
            ),
        )

    with progress:
        yield update
