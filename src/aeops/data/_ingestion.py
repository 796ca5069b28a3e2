"""From a raw table to a typed frame with an id column and known feature columns."""

from __future__ import annotations

import collections
import decimal
import logging
from collections.abc import Iterable
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
from pandas.tseries.api import guess_datetime_format

from aeops.data._config import DataConfig

logger = logging.getLogger(__name__)

_Arrow = TypeVar("_Arrow", pa.Table, pa.RecordBatch)

#: The cells pandas reads as missing by default (``pd.read_csv``'s ``na_values``), and
#: so ``train`` does: the batch engines read a CSV by the same rule.
MISSING_TEXT = (
    *("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND"),
    *("1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"),
)


class DataIngestionError(ValueError):
    """The raw table cannot be turned into model input as configured."""


def _looks_numeric(column: pd.Series) -> bool:
    """Numeric dtype, or text of which most values parse as numbers.

    A stray ``"abc"`` in a numeric CSV column turns the whole column into text; such a
    column is still a feature, so validation can name the bad value instead of the
    column silently dropping out of the model.
    """
    if pd.api.types.is_bool_dtype(column):
        return False
    if pd.api.types.is_numeric_dtype(column):
        return True
    if not (pd.api.types.is_object_dtype(column) or pd.api.types.is_string_dtype(column)):
        return False
    present = column.dropna()
    if present.empty:
        return False
    parsed = pd.to_numeric(present.astype(str).str.strip(), errors="coerce")
    return bool(parsed.notna().mean() >= 0.5)


def _first_value(column: pd.Series) -> Any:
    present = column.dropna()
    value = present.iloc[0] if len(present) else None
    return value.item() if isinstance(value, np.generic) else value  # True, not np.True_


def resolve_feature_columns(frame: pd.DataFrame, config: DataConfig) -> list[str]:
    """The configured feature columns, or every numeric column but the id and label.

    Text columns whose values are mostly numbers count as numeric (see
    :func:`_looks_numeric`); other text columns are left out, with a warning.

    Raises:
        DataIngestionError: if no feature column can be found.
    """
    if config.feature_columns:
        return list(config.feature_columns)
    reserved = {config.id_column, config.label_column}
    if config.kind == "timeseries":
        reserved.add(config.timestamp_column)
    if config.kind == "image":
        reserved.add(config.image_column)
    candidates = [str(name) for name in frame.columns if name not in reserved]
    columns = [name for name in candidates if _looks_numeric(frame[name])]
    skipped = sorted(set(candidates) - set(columns))
    if skipped:
        samples = ", ".join(f"{name!r} ({_first_value(frame[name])!r})" for name in skipped)
        logger.warning(
            "Not using column(s) %s as features: their values are not numbers. To use "
            "one, list the features in data.feature_columns (validation then names each "
            "value that is not a number)",
            samples,
        )
    if not columns:
        raise DataIngestionError(
            f"no numeric feature columns found among {list(map(str, frame.columns))}; "
            "set data.feature_columns"
        )
    counters = [name for name in columns if _counts_rows(name, frame[name])]
    if counters:
        logger.warning(
            "Column(s) %s count the rows (0, 1, 2, ...) and are used as features, so a "
            "row's position becomes part of its score. A pandas index saved with the "
            "table (to_csv without index=False) reads so. Name such a column "
            "data.id_column, or list the features in data.feature_columns",
            ", ".join(map(repr, counters)),
        )
    return columns


def _counts_rows(name: str, column: pd.Series) -> bool:
    """Whether ``column`` looks like a row number: pandas' name for a header left
    blank (``Unnamed: 0``), or the values 0, 1, 2, ... (or 1, 2, 3, ...) in order."""
    if name.startswith("Unnamed: "):
        return True
    if len(column) < 3 or not pd.api.types.is_numeric_dtype(column) or column.isna().any():
        return False
    values = column.to_numpy()
    start = values[0]
    return bool(start in (0, 1) and np.array_equal(values, np.arange(start, start + len(values))))


def ingest(raw: pd.DataFrame, config: DataConfig) -> pd.DataFrame:
    """Return a copy of ``raw`` with the id column first, kept or created.

    The id column is kept when present and otherwise created as the row number, so
    every answer can be joined back to its input. Columns are not cast here, but for
    DECIMAL ones (read as float64, as numbers in a CSV are): a column of the wrong type
    is validation's to report, with its bad values.

    For time series the timestamp column is parsed to datetimes: ISO 8601 in any mix of
    dates, times, fractions and offsets (offsets that change, as across a daylight
    saving switch, give UTC), else each value's own format. Empty values become NaT,
    which validation reports with their ids; numeric timestamps stay numeric.

    Args:
        raw: the table as the catalog loaded it.
        config: the ``data`` block.

    Returns:
        A new frame; ``raw`` is not changed.

    Raises:
        DataIngestionError: if the table has no columns or no rows, or a timestamp is
            not a date-time (naming its row, id and value).
    """
    source = raw.attrs.get("source", "the raw table")
    if raw.shape[1] == 0:
        raise DataIngestionError(f"{source} has no columns")
    if raw.shape[0] == 0:
        raise DataIngestionError(
            f"{source} has a header ({raw.shape[1]} columns) but no rows; expected rows to read"
        )
    frame = _decimals_as_floats(raw.copy(), exclude=config.id_column)
    if config.kind == "timeseries":
        frame = parse_timestamps(frame, config, source)
    frame.columns = [str(name) for name in frame.columns]
    if config.id_column not in frame.columns:
        frame.insert(0, config.id_column, pd.RangeIndex(len(frame), name=None).to_numpy())
    else:
        frame = frame[[config.id_column, *(c for c in frame.columns if c != config.id_column)]]
    return frame.reset_index(drop=True)


def _decimals_as_floats(frame: pd.DataFrame, exclude: str) -> pd.DataFrame:
    """``frame`` with each column of ``Decimal`` values (a Parquet DECIMAL, as pandas
    holds it) but ``exclude`` (the id) as float64, as a CSV's numbers read: a model
    takes floats, and validation would refuse the column's object dtype."""
    for name in frame.columns:
        column = frame[name]
        if name == exclude or not pd.api.types.is_object_dtype(column):
            continue
        present = column.dropna()
        if len(present) and all(isinstance(value, decimal.Decimal) for value in present):
            frame[name] = column.astype("float64")
    return frame


def parse_timestamps(frame: pd.DataFrame, config: DataConfig, source: str) -> pd.DataFrame:
    """``frame`` with its timestamp column read as date-times (or numbers), as every
    path that reads a series must: ISO 8601, another date-time format, or numbers.

    Raises:
        DataIngestionError: naming ``source``, the rows and values that are no time
            stamps, or a missing timestamp column.
    """
    column = config.timestamp_column
    if column not in frame.columns:
        raise DataIngestionError(
            f"data.timestamp_column={column!r} is not a column of the series; "
            f"columns are {list(map(str, frame.columns))}"
        )
    values = frame[column]
    if pd.api.types.is_datetime64_any_dtype(values):
        return frame
    if pd.api.types.is_numeric_dtype(values) and config.timestamp_format is None:
        return frame
    # Numbers with a format are dates written as digits, such as 20260130 for %Y%m%d;
    # a float column (one blank cell makes one) would write them as 20260130.0.
    if pd.api.types.is_float_dtype(values):
        whole = values.dropna()
        if (whole == np.floor(whole)).all():
            values = values.astype("Int64")
    text = values.astype("string").str.strip()
    present = _present(text)
    numbers = pd.to_numeric(text, errors="coerce").astype("float64")
    if config.timestamp_format is not None:
        parsed = _formatted(text, config.timestamp_format)
        expected = f"date-times in data.timestamp_format={config.timestamp_format!r}"
    elif present.any() and numbers[present].notna().mean() >= 0.5:  # numbers stored as text
        parsed, expected = numbers, "numbers, as the column's other values are"
    else:
        try:
            parsed = _datetimes(text, present, utc=False, source=source)
        except (ValueError, TypeError):  # offsets that change (a DST switch), naive and aware
            parsed = _datetimes(text, present, utc=True, source=source)
        expected = (
            "ISO 8601 date-times such as '2026-01-01 00:05:00' (any UTC offset), another "
            "date-time format (data.timestamp_format), or numbers"
        )
    unreadable = (present & parsed.isna()).to_numpy(dtype=bool)
    if unreadable.any():
        rows = np.flatnonzero(unreadable)
        shown = rows[:3].tolist()
        ids = frame[config.id_column].iloc[shown].tolist() if config.id_column in frame else None
        examples = ", ".join(
            f"row {row}{'' if ids is None else f' ({config.id_column}={ids[i]!r})'}: "
            f"{text.iloc[row]!r}"
            for i, row in enumerate(shown)
        )
        raise DataIngestionError(
            f"{source}: data.timestamp_column={column!r} holds {rows.size} value(s) that are "
            f"not time stamps, {examples}; expected {expected}"
        )
    frame[column] = parsed
    return frame


def _formatted(text: pd.Series, timestamp_format: str) -> pd.Series:
    """Date-times of ``text`` in ``timestamp_format`` (UTC when their offsets change),
    NaT where a value is not in it."""
    try:
        return pd.to_datetime(text, format=timestamp_format, errors="coerce")
    except ValueError:  # offsets that change (a DST switch)
        return pd.to_datetime(text, format=timestamp_format, errors="coerce", utc=True)


def _datetimes(text: pd.Series, present: pd.Series, utc: bool, source: str) -> pd.Series:
    """Date-times of ``text`` (``present``: where it holds any), NaT where none: ISO 8601
    first (fast, and any mix of
    dates, times, fractions and offsets); then the remaining values in the format
    pandas infers from the first of them (fast too: one format, such as
    ``01/31/2026 10:00``); then each value left by its own format (slow, dateutil),
    with a warning: a day-first date that the inferred month-first format refused is
    read day-first there, while the earlier ones were read month-first.

    Raises:
        ValueError: for offsets that change from value to value, unless ``utc``.
    """
    parsed = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=utc)
    for format in (None, "mixed"):
        left = present & parsed.isna()
        if not left.any():
            break
        retry = pd.to_datetime(text[left], format=format, errors="coerce", utc=utc)
        if retry.notna().any():
            if (retry.dt.tz is None) != (parsed.dt.tz is None):
                raise ValueError(f"naive and aware date-times: {parsed.dtype}, {retry.dtype}")
            parsed = parsed.where(~left, retry.astype(parsed.dtype))
            if format == "mixed" and (present & ~left).any():
                _warn_mixed_formats(text, present & ~left, left & parsed.notna(), source)
    return parsed


def _warn_mixed_formats(text: pd.Series, first: pd.Series, own: pd.Series, source: str) -> None:
    """Warn that some time stamps were read in another format than the others."""
    first_row = int(np.flatnonzero(first.to_numpy(dtype=bool))[0])
    own_row = int(np.flatnonzero(own.to_numpy(dtype=bool))[0])
    inferred = guess_datetime_format(str(text.iloc[first_row]))
    logger.warning(
        "%s: %d time stamp(s) are not in the format of the others (%s, from row %d: %r), "
        "and were read one by one, row %d: %r. Day-first dates read month-first? Set "
        "data.timestamp_format, e.g. '%%d/%%m/%%Y %%H:%%M'",
        source,
        int(own.sum()),
        inferred or "ISO 8601",
        first_row,
        text.iloc[first_row],
        own_row,
        text.iloc[own_row],
    )


def _present(text: pd.Series) -> pd.Series:
    """Whether each value holds text (not missing, not blank), as plain booleans."""
    return (text.fillna("") != "").astype(bool)


def repeated_names_problem(source: object, names: Iterable[Any]) -> str | None:
    """What is wrong with a table (``source``, a file) whose header gives more than one
    column the same name, or None when every name is its own: which of them a feature
    means would be a guess (pandas keeps the first and renames the second ``name.1``)."""
    counts = collections.Counter(str(name) for name in names)
    repeated = sorted(name for name, count in counts.items() if count > 1)
    if not repeated:
        return None
    return (
        f"{source} has more than one column named {', '.join(map(repr, repeated))}; "
        "give every column its own name"
    )


def another_delimiter_problem(source: object, names: list[str]) -> str | None:
    """What is wrong with a CSV (``source``) whose comma-separated header gave one
    column, ``names``, holding ``;``, a tab or ``|``: it uses that delimiter, and the
    message says which setting reads it. None for any other header."""
    if len(names) != 1:
        return None
    header = str(names[0])
    for delimiter, name in ((";", "';'"), ("\t", "'\\t'"), ("|", "'|'")):
        if delimiter in header:
            return (
                f"{source} read as a single column {header!r}: it looks {name}-delimited; "
                f"set load_args: {{sep: {name}}} on its catalog entry"
            )
    return None


def decimals_as_floats(data: _Arrow, columns: Iterable[str]) -> _Arrow:
    """``data`` with those of ``columns`` that are DECIMAL (a database's or Spark's
    NUMERIC) as float64, as pandas reads a CSV's numbers; any other column, an id
    among them, as it is."""
    wanted = set(columns)
    schema = data.schema
    fields = [
        f.with_type(pa.float64()) if f.name in wanted and pa.types.is_decimal(f.type) else f
        for f in schema
    ]
    if fields == list(schema):
        return data
    return data.cast(pa.schema(fields, metadata=schema.metadata))
