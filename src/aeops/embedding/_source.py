"""A table to stream: one CSV or Parquet file, or a folder of parts."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv",)


def open_parquet(path: Path) -> pq.ParquetFile:
    """A Parquet reader with bounded memory: buffered column reads, no pre-buffering.

    pyarrow's default pre-buffers whole row groups ahead, which on wide files grows the
    resident set with the file instead of with the batch size.
    """
    return pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 22)


class SourceError(ValueError):
    """The input cannot be read as a table."""


@dataclass(frozen=True)
class TableSource:
    """Where the input rows are; reading happens batch by batch, on demand.

    Attributes:
        path: a file, or a folder whose ``.parquet``/``.csv`` files are its parts.
    """

    path: Path

    @property
    def is_folder(self) -> bool:
        """Whether the input is a folder of parts (the output is then one too)."""
        return self.path.is_dir()

    def parts(self) -> list[Path]:
        """The files to read, in name order.

        Raises:
            SourceError: if the path does not exist or holds no table files.
        """
        if not self.path.exists():
            raise SourceError(f"{self.path} does not exist")
        if not self.is_folder:
            return [self.path]
        parts = sorted(
            p
            for p in self.path.iterdir()
            if p.is_file() and p.suffix.lower() in PARQUET_SUFFIXES + CSV_SUFFIXES
        )
        if not parts:
            raise SourceError(f"{self.path} is a folder with no .parquet or .csv parts")
        return parts

    def num_rows(self, part: Path) -> int | None:
        """Rows in ``part`` when its footer says (Parquet), else None."""
        if part.suffix.lower() in PARQUET_SUFFIXES:
            return int(open_parquet(part).metadata.num_rows)
        return None

    def batches(self, part: Path, batch_rows: int) -> Iterator[pa.RecordBatch]:
        """Record batches of at most ``batch_rows`` rows from ``part``.

        Raises:
            SourceError: naming the part when it is empty or unreadable.
        """
        suffix = part.suffix.lower()
        if part.stat().st_size == 0:
            raise SourceError(f"{part} is empty (0 bytes)")
        try:
            if suffix in PARQUET_SUFFIXES:
                yield from open_parquet(part).iter_batches(batch_size=batch_rows)
            elif suffix in CSV_SUFFIXES:
                options = pacsv.ReadOptions(block_size=max(1 << 20, batch_rows * 64))
                for batch in pacsv.open_csv(part, read_options=options):
                    for start in range(0, batch.num_rows, batch_rows):
                        yield batch.slice(start, batch_rows)
            else:
                raise SourceError(f"{part} is neither .csv nor .parquet")
        except (pa.ArrowInvalid, OSError) as error:
            raise SourceError(f"{part} could not be read as a table: {error}") from error
