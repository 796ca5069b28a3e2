"""A progress bar for a person at a terminal; silence everywhere else."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

from aeops.training._records import EpochRecord

ProgressUpdate = Callable[[EpochRecord], None]


def _ignore(record: EpochRecord) -> None:
    """The update used when no bar is shown."""


@contextlib.contextmanager
def epoch_progress(enabled: bool, epochs: int, first_epoch: int) -> Iterator[ProgressUpdate]:
    """Yield a function that advances a rich progress bar by one epoch.

    The bar goes to stderr and only when stderr is a terminal, so logs, CI output and
    kedro runs in the background stay clean. rich is imported only then, which keeps
    the training package importable where rich is absent.

    Args:
        enabled: ``training.progress``.
        epochs: the planned number of epochs.
        first_epoch: the epoch the run starts at (after a resume, not 1).
    """
    if not (enabled and sys.stderr.isatty()):
        yield _ignore
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
