"""A table to stream: one CSV or Parquet file, or a folder of parts."""

from __future__ import annotations

import codecs
import csv
import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from aeops.data import (
    MISSING_TEXT,
    another_delimiter_problem,
    decimals_as_floats,
    repeated_names_problem,
)

PARQUET_SUFFIXES = (".parquet", ".pq")
# The rules a CSV part is read by (see TableSource._csv_reader); a new rule gets a new
# name, so that outputs read under the old ones are written again.
_CSV_RULES = "pandas-nulls, dates-as-text"
CSV_SUFFIXES = (".csv",)


def open_parquet(path: Path) -> pq.ParquetFile:
    """A Parquet reader with bounded memory: buffered column reads, no pre-buffering.

    pyarrow's default pre-buffers whole row groups ahead, which on wide files grows the
    resident set with the file instead of with the batch size.
    """
    return pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 22)


#: a row group up to this size (Parquet's uncompressed size) is read whole and sliced
WHOLE_ROW_GROUP_BYTES = 512 << 20


def parquet_batches(path: Path, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """Record batches of at most ``batch_rows`` rows of a Parquet file, one row group at
    a time: while a group decodes, its raw pages and columns are all it holds.

    A row group up to :data:`WHOLE_ROW_GROUP_BYTES` uncompressed is read whole and
    sliced. For 1M-row groups of 65 float32 columns (260 MB), that held 230 MB less
    than ``ParquetFile.iter_batches`` over the file (350 against 580 MB above the
    baseline) and read 1.6 to 1.8 times as fast. A larger group goes through
    ``iter_batches``, which does not hold it whole, and so does a file with a nested
    column (an image's list of pixels): decoding a whole group of lists took about 14
    times its size (2.3 GB for a 165 MB group of 64 x 64 RGB images; ``iter_batches``
    of 1,365 rows peaked at 0.4 GB). The uncompressed size is
    Parquet's own measure of the encoded pages: for fixed-width columns it is the
    decoded size, but a dictionary-encoded text column can decode to several times it.
    The last slice of a group is released before the next group is read, as long as
    the caller drops its batch before asking for the next one.

    Args:
        path: a Parquet file.
        batch_rows: the most rows a batch has; a batch never spans two row groups.

    Returns:
        The file's rows in order, as record batches.
    """
    file = open_parquet(path)
    nested = any(pa.types.is_nested(field.type) for field in file.schema_arrow)
    for index in range(file.num_row_groups):
        if nested or file.metadata.row_group(index).total_byte_size > WHOLE_ROW_GROUP_BYTES:
            yield from file.iter_batches(batch_size=batch_rows, row_groups=[index])
            continue
        # Popped, not iterated: the list must not keep a yielded slice (and with it
        # the group) alive while the next group is read.
        batches = file.read_row_group(index).to_batches(max_chunksize=batch_rows)
        batches.reverse()
        while batches:
            yield batches.pop()


class SourceError(ValueError):
    """The input cannot be read as a table.

    Attributes:
        column: the CSV column whose value did not convert to the type its first block
            gave it, when that was the cause.
        wider: the type that column's values would all convert to: text where one is
            not a number, float64 where a whole-number column holds a fraction (or an
            integer beyond int64); None otherwise.
    """

    def __init__(
        self, message: str, column: str | None = None, wider: pa.DataType | None = None
    ) -> None:
        super().__init__(message)
        self.column = column
        self.wider = wider


@dataclass(frozen=True)
class TableSource:
    """Where the input rows are; reading happens batch by batch, on demand.

    Attributes:
        path: a file, or a folder whose ``.parquet``/``.csv`` files are its parts.
        csv_delimiter: the field delimiter of CSV parts.
        csv_encoding: the character encoding of CSV parts (``latin-1``, ...).
        csv_text_columns: CSV columns read as text, whatever their values look like
            (zero-padded ids such as ``000042``, which would read as the number 42).
    """

    path: Path
    csv_delimiter: str = ","
    csv_encoding: str = "utf-8"
    csv_text_columns: tuple[str, ...] = ()

    @property
    def csv_reading(self) -> str:
        """How a CSV part is read: the reader's rules and the settings, recorded in each
        output part, so a rerun that would read a part otherwise writes it again."""
        encoding = codecs.lookup(self.csv_encoding).name  # utf-8 however it was written
        return (
            f"{_CSV_RULES}; sep={self.csv_delimiter!r}; encoding={encoding}; "
            f"text={sorted(self.csv_text_columns)}"
        )

    @property
    def is_folder(self) -> bool:
        """Whether the input is a folder of parts (the output is then one too)."""
        return self.path.is_dir()

    def parts(self) -> list[Path]:
        """The files to read, in name order.

        Raises:
            SourceError: if the path does not exist, holds no table files, or holds
                subfolders (say Hive-style ``date=...``), whose rows would be missed.
        """
        if not self.path.exists():
            raise SourceError(f"{self.path} does not exist")
        if not self.is_folder:
            return [self.path]
        # Hidden ones (".x", "_x", as Spark and Hadoop write them) are not data.
        nested = sorted(p.name for p in self.path.iterdir() if p.is_dir() and p.name[0] not in "._")
        if nested:
            raise SourceError(
                f"{self.path} holds subfolders ({', '.join(nested[:5])}), which are not read: "
                "the parts must be .parquet or .csv files directly in the folder. Move "
                "their files up, or run the job on each subfolder"
            )
        parts = sorted(
            p
            for p in self.path.iterdir()
            if p.is_file()
            and p.suffix.lower() in PARQUET_SUFFIXES + CSV_SUFFIXES
            and not p.name.startswith((".", "_"))  # hidden ("._a.parquet"), as Spark skips
        )
        if not parts:
            raise SourceError(f"{self.path} is a folder with no .parquet or .csv parts")
        return parts

    def num_rows(self, part: Path) -> int | None:
        """Rows in ``part`` when its footer says (Parquet), else None."""
        if part.suffix.lower() in PARQUET_SUFFIXES:
            return int(open_parquet(part).metadata.num_rows)
        return None

    def batches(
        self,
        part: Path,
        batch_rows: int,
        csv_types: Mapping[str, pa.DataType] | None = None,
    ) -> Iterator[pa.RecordBatch]:
        """Record batches of at most ``batch_rows`` rows from ``part``.

        Args:
            part: one of :meth:`parts`.
            batch_rows: the most rows a batch has.
            csv_types: column types a CSV is read with (the model's numeric features).
                Without them, pyarrow fixes each column's type from the first block, and
                a column of whole numbers that later holds ``2.5`` fails mid-file. A
                Parquet part's DECIMAL columns among the float ones are read as float64.

        Raises:
            SourceError: naming the part when it is empty or unreadable, and the column,
                row and value when a CSV value does not convert to ``csv_types``.
        """
        suffix = part.suffix.lower()
        numeric = [name for name, kind in (csv_types or {}).items() if pa.types.is_floating(kind)]
        if part.stat().st_size == 0:
            raise SourceError(f"{part} is empty (0 bytes)")
        try:
            names = self.columns(part)
            problem = repeated_names_problem(part, names)
            if problem is not None:
                raise SourceError(problem)
            if suffix in PARQUET_SUFFIXES:
                # map() holds no batch while the next is read (a loop variable would
                # keep the last one, and with it its whole row group).
                cast = functools.partial(decimals_as_floats, columns=numeric)
                yield from map(cast, parquet_batches(part, batch_rows))
            elif suffix in CSV_SUFFIXES:
                for batch in self._csv_reader(part, batch_rows, csv_types):
                    for start in range(0, batch.num_rows, batch_rows):
                        yield batch.slice(start, batch_rows)
            else:
                raise SourceError(f"{part} is neither .csv nor .parquet")
        except (pa.ArrowInvalid, OSError, UnicodeError) as error:
            raise self._unreadable(part, error) from error

    def _csv_reader(
        self, part: Path, batch_rows: int, csv_types: Mapping[str, pa.DataType] | None
    ) -> pacsv.CSVStreamingReader:
        """A CSV part's reader, reading it as pandas does in ``train``: an empty cell
        or ``NA`` (:data:`~aeops.data.MISSING_TEXT`) is missing in a text column too
        (pyarrow would read ``""``), and a column of dates stays text (pyarrow would
        read timestamps, and a date-like id would come out changed).
        :attr:`csv_text_columns` are text too."""
        options = pacsv.ReadOptions(
            block_size=max(1 << 20, batch_rows * 64), encoding=self.csv_encoding
        )
        types = {**(csv_types or {}), **dict.fromkeys(self.csv_text_columns, pa.string())}

        def reader() -> pacsv.CSVStreamingReader:
            convert = pacsv.ConvertOptions(
                column_types=types, null_values=list(MISSING_TEXT), strings_can_be_null=True
            )
            return pacsv.open_csv(
                part,
                read_options=options,
                parse_options=self._parse_options,
                convert_options=convert,
            )

        opened = reader()
        # pyarrow fixes each column's type on the first block, which it has read by now.
        dates = [
            f.name for f in opened.schema if pa.types.is_temporal(f.type) and f.name not in types
        ]
        if not dates:
            return opened
        opened.close()
        types.update(dict.fromkeys(dates, pa.string()))
        return reader()

    @property
    def _parse_options(self) -> pacsv.ParseOptions:
        return pacsv.ParseOptions(delimiter=self.csv_delimiter)

    def has_column(self, part: Path, name: str) -> bool:
        """Whether ``part`` has the column ``name`` (a Parquet schema, a CSV header)."""
        return name in self.columns(part)

    def columns(self, part: Path) -> list[str]:
        """The column names of ``part`` (a Parquet schema, a CSV header).

        Raises:
            SourceError: for a CSV whose header reads as one column holding ``;``, tab
                or ``|``: another delimiter, named with the setting that reads it.
        """
        if part.suffix.lower() in PARQUET_SUFFIXES:
            return list(open_parquet(part).schema_arrow.names)
        header = self._csv_header(part)
        problem = another_delimiter_problem(part, header)
        if problem and self.csv_delimiter == "," and not self._quoted_header(part):
            raise SourceError(problem)
        return header

    def count_rows(self, part: Path) -> int:
        """Rows in ``part``: a Parquet footer's count, or a CSV read one column at a time
        as text (no values converted)."""
        if part.suffix.lower() in PARQUET_SUFFIXES:
            return int(open_parquet(part).metadata.num_rows)
        header = self._csv_header(part)
        if not header:
            return 0
        convert = pacsv.ConvertOptions(
            include_columns=header[:1], column_types={header[0]: pa.string()}
        )
        try:
            with pacsv.open_csv(
                part,
                read_options=pacsv.ReadOptions(encoding=self.csv_encoding),
                parse_options=self._parse_options,
                convert_options=convert,
            ) as reader:
                return sum(batch.num_rows for batch in reader)
        except (pa.ArrowInvalid, OSError, UnicodeError) as error:
            raise self._unreadable(part, error) from error

    def _csv_rows(self, part: Path) -> Iterator[list[str]]:
        """A CSV's rows as text, the header first, as pyarrow reads them (a UTF-8
        byte-order mark dropped)."""
        with part.open(newline="", encoding=self._text_encoding, errors="replace") as file:
            yield from csv.reader(file, delimiter=self.csv_delimiter)

    def _csv_header(self, part: Path) -> list[str]:
        return next(self._csv_rows(part), [])

    def _quoted_header(self, part: Path) -> bool:
        """Whether the header's first name is in quotes (a name that holds ``;``)."""
        with part.open(encoding=self._text_encoding, errors="replace") as file:
            return file.readline().lstrip("\ufeff").startswith('"')

    @property
    def _text_encoding(self) -> str:
        """:attr:`csv_encoding` for Python's text files: UTF-8 drops a byte-order
        mark, as pyarrow does."""
        utf8 = self.csv_encoding.lower().replace("_", "-") in ("utf-8", "utf8")
        return "utf-8-sig" if utf8 else self.csv_encoding

    def _unreadable(self, part: Path, error: Exception) -> SourceError:
        """The error for an unreadable part; a failed CSV conversion names the column,
        the first row (0-based, after the header) that holds no number, and its value."""
        if isinstance(error, UnicodeError):
            return SourceError(
                f"{part} could not be read as {self.csv_encoding} text ({error}); set "
                "load_args: {encoding: ...} on its catalog entry to the file's encoding"
            )
        match = _CONVERSION.search(str(error))
        if match is None:
            return SourceError(f"{part} could not be read as a table: {error}")
        index = int(match["index"])
        rows = self._csv_rows(part)
        header = next(rows, [])
        column = header[index] if index < len(header) else f"#{index}"
        for row_number, row in enumerate(rows):
            value = row[index] if index < len(row) else ""
            try:
                float(value)
            except ValueError:
                if value.strip() != "":  # an empty field is a null, not a conversion error
                    return SourceError(
                        f"{part}: column {column!r} holds {value!r} in row {row_number}; "
                        f"expected a numeric dtype ({match['type']}), a number in every row",
                        column,
                        pa.string(),
                    )
        # Every value is a number: a whole-number column that later holds 2.5 (or an
        # integer beyond int64) is a float column.
        wider = pa.float64() if match["type"].startswith(("int", "uint")) else None
        return SourceError(f"{part} could not be read as a table: {error}", column, wider)


_CONVERSION = re.compile(r"In CSV column #(?P<index>\d+): CSV conversion error to (?P<type>\w+)")
