"""Datasets of the batch jobs: a lazy input table, and a Parquet output that runs the job.

Like Kedro's Spark datasets, the node builds a lazy plan (an
:class:`~aeops.embedding.EmbedJob`) and saving it to the output dataset executes it,
streaming from the input to the output without holding the table in memory.
"""

from __future__ import annotations

import sys
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import AbstractDataset, DatasetError
from rich.progress import (
    BarColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from aeops.embedding import EmbedJob, TableSource


class TableSourceDataset(AbstractDataset[None, TableSource]):
    """An input table (CSV or Parquet file, or folder of parts), loaded lazily."""

    def __init__(self, *, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        """Point at ``filepath``; nothing is read until the job runs."""
        self._filepath = Path(filepath)
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(PurePosixPath(self._filepath))}

    def load(self) -> TableSource:
        """The source handle.

        Raises:
            DatasetError: if the path does not exist.
        """
        if not self._filepath.exists():
            raise DatasetError(f"{self._filepath} does not exist")
        return TableSource(self._filepath)

    def save(self, data: None) -> None:
        """Inputs are read-only."""
        raise DatasetError(f"{type(self).__name__} is read-only")

    def _exists(self) -> bool:
        return self._filepath.exists()


class BatchJobOutputDataset(AbstractDataset[EmbedJob, None]):
    """Parquet output of an embedding or scoring job; saving a job runs it.

    ``filepath`` is a file for a single input file, or a folder (one output part per
    input part, and a ``_SUCCESS`` marker when all are done) for a folder of parts.
    """

    def __init__(self, *, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        """Write to ``filepath``."""
        self._filepath = Path(filepath)
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(PurePosixPath(self._filepath))}

    def save(self, data: EmbedJob) -> None:
        """Run ``data`` into ``filepath``, with a progress bar at a terminal."""
        if not isinstance(data, EmbedJob):
            raise DatasetError(f"expected an EmbedJob to run, got {type(data).__name__}")
        parts = data.source.parts()
        counts = [data.source.num_rows(p) for p in parts]
        total = None if None in counts else sum(c or 0 for c in counts)
        columns = (
            TextColumn(f"{data.output}"),
            BarColumn(),
            TextColumn("{task.completed:,.0f} rows"),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, disable=not sys.stderr.isatty(), transient=True) as bar:
            task = bar.add_task(data.output, total=total, rate="")
            started = bar.get_time()

            def advance(rows: int) -> None:
                bar.advance(task, rows)
                elapsed = bar.get_time() - started
                done = bar.tasks[0].completed
                bar.update(task, rate=f"{done / elapsed:,.0f} rows/s" if elapsed > 0 else "")

            data.run(self._filepath, progress=advance)

    def load(self) -> None:
        """Outputs are read with pandas or pyarrow directly (they are plain Parquet)."""
        raise DatasetError(f"{type(self).__name__} is write-only; read {self._filepath}")

    def _exists(self) -> bool:
        return self._filepath.exists()
