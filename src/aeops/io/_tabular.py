"""A CSV or Parquet table, one file or a folder of files, read and written whole."""

from __future__ import annotations

import csv
import os
import re
import uuid
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from kedro.io import AbstractDataset
from pandas.api.types import is_numeric_dtype

from aeops.data import another_delimiter_problem, repeated_names_problem
from aeops.io._errors import DataFileError

_CSV_SUFFIXES = {".csv", ".tsv", ".txt"}
_PARQUET_SUFFIXES = {".parquet", ".pq"}


class TabularDataset(AbstractDataset[pd.DataFrame, pd.DataFrame]):
    """A table from a CSV or Parquet file, or from a folder of such files.

    The format follows each file's suffix. A folder is read as the concatenation of
    its files in name order, so a table split into parts loads as one frame. Errors
    name the file and what is wrong with it. Saving writes one file atomically (a
    temporary file renamed into place), so a failed save leaves no partial output.

    Example catalog entry::

        raw_data:
          type: aeops.io.TabularDataset
          filepath: data/01_raw/my_table.parquet
          load_args: {sep: ";"}   # passed to pandas.read_csv for CSV files
    """

    def __init__(
        self,
        *,
        filepath: str,
        load_args: dict[str, Any] | None = None,
        save_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Create a dataset over ``filepath`` (a file or a folder)."""
        self._filepath = Path(filepath)
        self._load_args = dict(load_args or {})
        self._save_args = dict(save_args or {})
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(PurePosixPath(self._filepath)), "load_args": self._load_args}

    def _files(self) -> list[Path]:
        path = self._filepath
        if path.is_dir():
            files = sorted(
                p
                for p in path.iterdir()
                if p.is_file()
                and p.suffix.lower() in _CSV_SUFFIXES | _PARQUET_SUFFIXES
                and not p.name.startswith((".", "_"))  # hidden ("._a.csv"), as Spark skips
            )
            if not files:
                raise DataFileError(f"{path} is a folder with no .csv or .parquet files")
            return files
        if not path.exists():
            raise DataFileError(f"{path} does not exist")
        return [path]

    def load(self) -> pd.DataFrame:
        """Read the file, or every file of the folder, into one frame.

        Raises:
            DataFileError: naming the file that is missing, empty or unreadable.
        """
        files = self._files()
        frames = [self._read(path) for path in files]
        columns = list(frames[0].columns)
        for path, frame in zip(files[1:], frames[1:], strict=True):
            if list(frame.columns) != columns:
                raise DataFileError(
                    f"{path} has columns {list(frame.columns)}, but {files[0].name}, the "
                    f"first part of {self._filepath}, has {columns}; every part must "
                    "share one schema"
                )
            _refuse_mixed_kinds(self._filepath, files[0], frames[0], path, frame)
        table = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
        # Lets validation errors name the file the bad rows came from.
        table.attrs["source"] = str(PurePosixPath(self._filepath))
        return table

    def _read(self, path: Path) -> pd.DataFrame:
        suffix = path.suffix.lower()
        if path.stat().st_size == 0:
            raise DataFileError(f"{path} is empty (0 bytes): expected a header and rows")
        if suffix in _PARQUET_SUFFIXES:
            try:
                _refuse_repeated_names(path, pq.read_schema(path).names)
                return pq.read_table(path, **self._load_args).to_pandas()
            except (pa.ArrowInvalid, OSError) as error:
                raise DataFileError(f"{path} is not a readable Parquet file: {error}") from error
        if suffix in _CSV_SUFFIXES:
            args: dict[str, Any] = {"sep": "\t"} if suffix == ".tsv" else {}
            args.update(self._load_args)
            try:
                frame = pd.read_csv(path, **args)
            except pd.errors.EmptyDataError as error:
                raise DataFileError(f"{path} has no header or rows: {error}") from error
            except (UnicodeDecodeError, pd.errors.ParserError) as error:
                raise DataFileError(
                    f"{path} could not be parsed as CSV ({error}); set load_args "
                    "(sep, encoding) on its catalog entry"
                ) from error
            if "sep" not in args:
                _refuse_another_delimiter(path, frame)
            if any(_RENAMED_REPEAT.fullmatch(str(n)) for n in frame.columns):
                # pandas renames a repeated name ("x", "x.1"); the header line says which.
                header = _header_line(path, args)
                if header is not None:
                    _refuse_repeated_names(path, header)
            return frame
        raise DataFileError(
            f"{path} has suffix {suffix!r}; expected one of "
            f"{sorted(_CSV_SUFFIXES | _PARQUET_SUFFIXES)}"
        )

    def save(self, data: pd.DataFrame) -> None:
        """Write ``data`` to ``filepath`` atomically, as CSV or Parquet by suffix."""
        path = self._filepath
        suffix = path.suffix.lower()
        if suffix not in _CSV_SUFFIXES | _PARQUET_SUFFIXES:
            raise DataFileError(
                f"{path}: cannot save a {suffix or 'suffix-less'} file; use .csv, .tsv or .parquet"
            )
        if suffix in _CSV_SUFFIXES:
            _refuse_array_cells(path, data)
        path.parent.mkdir(parents=True, exist_ok=True)
        # A unique name beside the target, created by the writer with the usual
        # permissions (mkstemp's files would be private to their owner).
        temp_name = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
        try:
            if path.suffix.lower() in _PARQUET_SUFFIXES:
                data.to_parquet(temp_name, index=False, **self._save_args)
            else:  # a .tsv is written as it is read: tab-separated
                tabs = {"sep": "\t"} if path.suffix.lower() == ".tsv" else {}
                data.to_csv(temp_name, index=False, **{**tabs, **self._save_args})
            temp_name.replace(path)
        except BaseException:
            temp_name.unlink(missing_ok=True)
            raise

    def _exists(self) -> bool:
        return self._filepath.exists()


def _refuse_array_cells(path: Path, frame: pd.DataFrame) -> None:
    """CSV writes an array cell as numpy prints it, which shortens one of over 1,000
    values with "...": pixels would be lost without a word."""
    for position, column in enumerate(frame.columns):
        values = frame.iloc[:, position]
        dtype = values.dtype
        if isinstance(dtype, pd.ArrowDtype):
            nested = pa.types.is_nested(dtype.pyarrow_dtype)
        elif pd.api.types.is_object_dtype(dtype):
            nested = bool(values.map(lambda v: isinstance(v, np.ndarray | list | tuple)).any())
        else:
            continue
        if nested:
            raise DataFileError(
                f"{path}: column {column!r} holds arrays, which CSV cannot hold whole; "
                "save to .parquet"
            )


_RENAMED_REPEAT = re.compile(r".+\.\d+")
# load_args that change which line is the header or which names it gives: with any of
# them, the names pandas reports are the user's choice, not checked against the file.
_HEADER_ARGS = {"names", "usecols", "index_col", "skiprows", "comment", "skip_blank_lines"}


def _header_line(path: Path, args: dict[str, Any]) -> list[str] | None:
    """The first line's fields, split as pandas splits them (``sep``, ``quotechar``,
    ``encoding`` of ``args``), without pandas renaming repeats; None when ``args``
    choose another header (``header``, ``names``, ``skiprows``, ...) or a separator
    that is a pattern."""
    sep = args.get("sep", args.get("delimiter", ","))
    if set(args) & _HEADER_ARGS or args.get("header", "infer") not in ("infer", 0):
        return None
    if not isinstance(sep, str) or len(sep) != 1:
        return None
    encoding = args.get("encoding") or "utf-8"
    with path.open(newline="", encoding=encoding, errors="replace") as file:
        line = next(csv.reader(file, delimiter=sep, quotechar=args.get("quotechar", '"')), [])
    return [field.lstrip("\ufeff") if index == 0 else field for index, field in enumerate(line)]


def _refuse_mixed_kinds(
    folder: Path, first_path: Path, first: pd.DataFrame, path: Path, frame: pd.DataFrame
) -> None:
    """A column of numbers in the folder's first part and of text in another (or the
    reverse) is named with a value that is no number; an empty column has no kind."""
    for name in first.columns:
        if is_numeric_dtype(first[name]) == is_numeric_dtype(frame[name]):
            continue
        if first[name].isna().all() or frame[name].isna().all():
            continue
        text_path, text = (path, frame) if is_numeric_dtype(first[name]) else (first_path, first)
        values = text[name].dropna()
        not_numbers = values[pd.to_numeric(values, errors="coerce").isna()]
        example = (
            f" ({text_path.name} holds {not_numbers.iloc[0]!r} in row {not_numbers.index[0]})"
            if len(not_numbers)
            else ""
        )
        raise DataFileError(
            f"{path}: column {name!r} is {frame[name].dtype}, but in {first_path.name}, the "
            f"first part of {folder}, it is {first[name].dtype}{example}; every part must "
            "give a column one kind of value"
        )


def _refuse_repeated_names(path: Path, names: list[Any]) -> None:
    problem = repeated_names_problem(path, names)
    if problem is not None:
        raise DataFileError(problem)


def _refuse_another_delimiter(path: Path, frame: pd.DataFrame) -> None:
    """A CSV read into one column whose name holds ``;``, tab or ``|`` used another
    delimiter: say which, instead of failing later on a missing column."""
    problem = another_delimiter_problem(path, list(frame.columns))
    if problem is not None:
        raise DataFileError(problem)
