"""Run a suite against a frame with GX and turn GX's result into a readable report."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from aeops.validation._context import GX_LOCK, whole_frame_batch_definition
from aeops.validation._report import FailedExpectation, ValidationReport, to_jsonable
from aeops.validation._suite import (
    FINITE_LIMIT,
    FLOAT64_MAX,
    NUMERIC_DTYPE_NAMES,
    suite_roles,
)
from aeops.validation._views import missing_column_text

if TYPE_CHECKING:
    import great_expectations as gx
    from great_expectations.core.expectation_validation_result import (
        ExpectationValidationResult,
    )

logger = logging.getLogger(__name__)

_SAMPLE_SIZE = 5
_MAX_COLUMNS_SHOWN = 20
_MAX_ERROR_CHARS = 200
# SUMMARY keeps GX from returning every unexpected value/row (COMPLETE would), which matters
# for large scoring frames; the partial lists are enough for samples.
_RESULT_FORMAT: dict[str, Any] = {
    "result_format": "SUMMARY",
    "partial_unexpected_count": 20,
    "return_unexpected_index_query": False,
}
_EXIST = "expect_column_to_exist"
_ROW_COUNT = "expect_table_row_count_to_be_between"
_TYPE_LIST = "expect_column_values_to_be_in_type_list"
_NOT_NULL = "expect_column_values_to_not_be_null"
_BETWEEN = "expect_column_values_to_be_between"
_UNIQUE = "expect_column_values_to_be_unique"
_IN_SET = "expect_column_values_to_be_in_set"


def validate_frame(
    frame: pd.DataFrame,
    suite: gx.ExpectationSuite,
    *,
    source: str,
    id_column: str | None = None,
) -> ValidationReport:
    """Validate a frame against a suite and summarise the outcome.

    The frame is handed to GX as a shallow copy (pandas copy-on-write protects the data), so
    it is never mutated; its float32 columns as float64, which GX checks column-wise (a
    custom suite that asks for float32 by name sees float64).
    Expectations that raise inside GX are reported as failed with ``observed="not
    evaluated: ..."``. Expectations on a column that is missing from the frame are folded
    into that column's ``expect_column_to_exist`` failure.

    Args:
        frame: The frame to validate.
        suite: Suite from :func:`build_suite` or :func:`suite_from_dict` (any GX suite works).
        source: Where the frame came from (path or dataset name), used in messages.
        id_column: Column whose values identify bad rows in the report. Defaults to the id
            column recorded in the suite by :func:`build_suite`; ignored if absent from the
            frame.

    Returns:
        The report; call :meth:`ValidationReport.raise_for_failures` to turn failure into
        :class:`DataValidationError`.

    Raises:
        TypeError: If ``frame`` is not a pandas DataFrame.
    """
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"frame must be a pandas DataFrame, got {type(frame).__name__}")
    if id_column is None:
        recorded = suite_roles(suite).get("id_column")
        id_column = recorded if isinstance(recorded, str) else None
    index_column = id_column if id_column is not None and id_column in frame.columns else None
    result_format = dict(_RESULT_FORMAT)
    if index_column is not None:
        # GX fails every map expectation if an index column is missing, hence the check above.
        result_format["unexpected_index_column_names"] = [index_column]

    handed = frame.copy(deep=False)
    # GX checks a range over whole float64 columns; on float32 (as Parquet often holds)
    # it calls Python per value: 16 s against 2.5 s for 1M x 50. By position: a name
    # may repeat.
    for index, dtype in enumerate(handed.dtypes):
        if dtype in (np.float16, np.float32):
            handed.isetitem(index, handed.iloc[:, index].to_numpy(dtype="float64"))
    started = time.perf_counter()
    with GX_LOCK:
        batch = whole_frame_batch_definition().get_batch(batch_parameters={"dataframe": handed})
        result = batch.validate(suite, result_format=result_format)
    elapsed = time.perf_counter() - started

    results = list(result.results)
    failures = _failures(results, suite, frame, index_column)
    report = ValidationReport(
        source=source,
        success=bool(result.success),
        evaluated=len(results),
        failures=failures,
        gx_result=to_jsonable(result.to_json_dict()),
    )
    log = logger.info if report.success else logger.warning
    log(
        "%s in %.2fs (%d rows x %d columns)",
        report.summary(),
        elapsed,
        len(frame),
        len(frame.columns),
    )
    return report


@dataclass(frozen=True)
class _Outcome:
    """The parts of one GX ``ExpectationValidationResult`` this module reads."""

    expectation: str
    kwargs: dict[str, Any]
    column: str | None
    success: bool
    result: dict[str, Any]
    error: str | None

    @classmethod
    def from_gx(cls, r: ExpectationValidationResult) -> _Outcome:
        config = r.expectation_config
        expectation = config.type if config is not None else "unknown_expectation"
        kwargs = dict(config.kwargs) if config is not None else {}
        column = kwargs.get("column")
        return cls(
            expectation=expectation,
            kwargs=kwargs,
            column=str(column) if column is not None else None,
            success=bool(r.success),
            result=dict(r.result or {}),
            error=_error_message(r.exception_info),
        )


def _failures(
    results: list[ExpectationValidationResult],
    suite: gx.ExpectationSuite,
    frame: pd.DataFrame,
    index_column: str | None,
) -> tuple[FailedExpectation, ...]:
    order = {
        _config_key(e.configuration.type, e.configuration.kwargs): i
        for i, e in enumerate(suite.expectations)
    }
    failed = [o for o in map(_Outcome.from_gx, results) if not o.success]
    failed.sort(key=lambda o: order.get(_config_key(o.expectation, o.kwargs), len(order)))
    present = {str(c) for c in frame.columns}
    missing_reported = {
        o.column
        for o in failed
        if o.expectation == _EXIST and o.column is not None and o.column not in present
    }
    # A column of the wrong type makes GX raise in its value checks (text against
    # numeric bounds): those are folded into the type failure, which says why.
    mistyped = {o.column for o in failed if o.expectation == _TYPE_LIST and o.column is not None}
    folded: dict[str, int] = {}
    kept: list[_Outcome] = []
    for o in failed:
        into_missing = o.expectation != _EXIST and o.column in missing_reported
        into_type = o.expectation != _TYPE_LIST and o.error is not None and o.column in mistyped
        if o.column is not None and (into_missing or into_type):
            folded[o.column] = folded.get(o.column, 0) + 1
        else:
            kept.append(o)
    return tuple(_describe_failure(o, frame, index_column, folded) for o in kept)


def _config_key(expectation_type: str, kwargs: Mapping[str, Any]) -> str:
    cleaned = {k: v for k, v in kwargs.items() if k != "batch_id"}
    return expectation_type + json.dumps(to_jsonable(cleaned), sort_keys=True)


def _describe_failure(
    o: _Outcome,
    frame: pd.DataFrame,
    index_column: str | None,
    folded: Mapping[str, int],
) -> FailedExpectation:
    expectation, column, result = o.expectation, o.column, o.result
    expected = expectation_text(expectation, o.kwargs)

    if expectation == _EXIST:
        observed = missing_column_text(column, _columns_text(frame))
        observed += _skipped(folded, column)
        return FailedExpectation(expectation, column, expected, observed, [], [])
    if o.error is not None:
        observed = f"not evaluated: {o.error}"
        if expectation == _TYPE_LIST:
            observed += _skipped(folded, column)
        return FailedExpectation(expectation, column, expected, observed, [], [])
    if expectation == _ROW_COUNT:
        rows = result.get("observed_value", len(frame))
        observed = f"{rows} rows"
        if rows == 0:
            observed += f" (header only; columns {_columns_text(frame)})"
        return FailedExpectation(expectation, column, expected, observed, [], [])
    if expectation == _TYPE_LIST and column is not None:
        failure = _type_failure(expectation, column, expected, frame, index_column)
        return replace(failure, observed=failure.observed + _skipped(folded, column))
    if "unexpected_count" in result:
        return _map_failure(expectation, column, o.kwargs, expected, result, frame, index_column)
    observed_value = result.get("observed_value")
    observed = f"observed value {to_jsonable(observed_value)!r}" if result else "failed"
    return FailedExpectation(expectation, column, expected, observed, [], [])


def _map_failure(
    expectation: str,
    column: str | None,
    kwargs: Mapping[str, Any],
    expected: str,
    result: Mapping[str, Any],
    frame: pd.DataFrame,
    index_column: str | None,
) -> FailedExpectation:
    count = int(result.get("unexpected_count") or 0)
    total = int(result.get("element_count") or len(frame))
    noun = {
        _NOT_NULL: "null value",
        _UNIQUE: "row with a duplicated value|rows with a duplicated value",
        _IN_SET: "value not in the set|values not in the set",
    }.get(expectation, "unexpected value")
    if expectation == _BETWEEN:
        noun = (
            "value that is infinite or outside float32|values that are infinite or outside float32"
            if _is_finite_check(kwargs)
            else "value out of bounds|values out of bounds"
        )
    observed = f"{_count(count, noun)} ({_percent(count, total)})"

    values = [to_jsonable(v) for v in result.get("partial_unexpected_list") or []]
    ids: list[Any] = []
    rows = result.get("partial_unexpected_index_list") or []
    if index_column is not None and column != index_column:
        ids = [to_jsonable(row.get(index_column)) for row in rows if isinstance(row, Mapping)]
    if expectation == _UNIQUE:
        values = _unique(values)
    if column is not None and column == index_column and expectation == _NOT_NULL:
        positions = np.flatnonzero(frame[column].isna().to_numpy())[:_SAMPLE_SIZE]
        observed += f" at row positions {[int(p) for p in positions]}"
    return FailedExpectation(
        expectation, column, expected, observed, values[:_SAMPLE_SIZE], ids[:_SAMPLE_SIZE]
    )


def _type_failure(
    expectation: str,
    column: str,
    expected: str,
    frame: pd.DataFrame,
    index_column: str | None,
) -> FailedExpectation:
    series = frame[column]
    if isinstance(series, pd.DataFrame):  # duplicated column name
        series = series.iloc[:, 0]
    observed = f"dtype {series.dtype}"
    try:
        parsed = pd.to_numeric(series, errors="coerce")
        unparseable = series.notna() & pd.isna(parsed)
    except (TypeError, ValueError):
        unparseable = series.notna()
    bad = series[unparseable]
    ids: list[Any] = []
    if len(bad):
        observed += f", {_count(len(bad), 'value')} not parseable as a number"
        if index_column is not None and index_column != column:
            ids = [to_jsonable(v) for v in frame.loc[unparseable, index_column].head(_SAMPLE_SIZE)]
        sample = bad.head(_SAMPLE_SIZE)
    else:
        sample = series.dropna().head(_SAMPLE_SIZE)
    values = [to_jsonable(v) for v in sample]
    return FailedExpectation(expectation, column, expected, observed, values, ids)


def expectation_text(expectation: str, kwargs: Mapping[str, Any]) -> str:
    """What an expectation asks for, in words (``finite values (within ...)``)."""
    if expectation == _ROW_COUNT:
        return _range_text(kwargs.get("min_value"), kwargs.get("max_value"), "rows")
    if expectation == _EXIST:
        return "column present"
    if expectation == _NOT_NULL:
        return "no null values"
    if expectation == _UNIQUE:
        return "unique values"
    if expectation == _TYPE_LIST:
        type_list = list(kwargs.get("type_list") or [])
        if set(type_list) == set(NUMERIC_DTYPE_NAMES):
            return "numeric dtype"
        return f"dtype in {type_list}"
    if expectation == _BETWEEN:
        if _is_finite_check(kwargs):
            limit = _number(float(kwargs["max_value"]))
            return f"finite values (within +-{limit}, the float32 range)"
        return _range_text(kwargs.get("min_value"), kwargs.get("max_value"), "values")
    if expectation == _IN_SET:
        return f"values in {to_jsonable(kwargs.get('value_set'))}"
    details = {k: v for k, v in kwargs.items() if k not in {"column", "batch_id"}}
    return json.dumps(to_jsonable(details), sort_keys=True) if details else "success"


def _range_text(low: Any, high: Any, unit: str) -> str:
    if low is not None and high is not None:
        return f"{unit} in [{_number(low)}, {_number(high)}]"
    if low is not None:
        return f"{unit} >= {_number(low)}" if unit == "values" else f"at least {low} {unit}"
    if high is not None:
        return f"{unit} <= {_number(high)}" if unit == "values" else f"at most {high} {unit}"
    return f"any number of {unit}"


def _is_finite_check(kwargs: Mapping[str, Any]) -> bool:
    high = kwargs.get("max_value")
    return high in (FINITE_LIMIT, FLOAT64_MAX) and kwargs.get("min_value") == -high


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _skipped(folded: Mapping[str, int], column: str | None) -> str:
    """``"; 2 dependent expectations not evaluated"`` for a column whose other checks
    were folded into this failure, else ``""``."""
    dependent = folded.get(column or "", 0)
    return f"; {_count(dependent, 'dependent expectation')} not evaluated" if dependent else ""


def _count(count: int, noun: str) -> str:
    """Return e.g. ``"1 null value"`` / ``"3 null values"``.

    ``noun`` is ``"singular|plural"`` when the plural is not the singular plus "s"
    (``"row with a duplicated value|rows with a duplicated value"``).
    """
    singular, _, plural = noun.partition("|")
    return f"1 {singular}" if count == 1 else f"{count} {plural or singular + 's'}"


def _percent(count: int, total: int) -> str:
    if total <= 0:
        return "n/a"
    share = 100.0 * count / total
    return "<0.1%" if 0 < share < 0.1 else f"{share:.1f}%"


def _columns_text(frame: pd.DataFrame) -> str:
    names = [str(c) for c in frame.columns]
    shown = repr(names[:_MAX_COLUMNS_SHOWN])
    if len(names) > _MAX_COLUMNS_SHOWN:
        shown = shown[:-1] + f", ... (+{len(names) - _MAX_COLUMNS_SHOWN} more)]"
    return shown


def _unique(values: list[Any]) -> list[Any]:
    seen: list[Any] = []
    for value in values:
        if value not in seen:
            seen.append(value)
    return seen


def _error_message(info: Any) -> str | None:
    """Return the first exception message in a GX ``exception_info``, shortened, or None.

    GX stores either one ``{"raised_exception": ..., "exception_message": ...}`` dict or a
    dict of them keyed by metric configuration id.
    """
    if not isinstance(info, Mapping):
        return None
    candidates = [info] if "raised_exception" in info else list(info.values())
    for candidate in candidates:
        if isinstance(candidate, Mapping) and candidate.get("raised_exception"):
            message = str(candidate.get("exception_message") or "unknown error").strip()
            first_line = message.splitlines()[0] if message else "unknown error"
            if len(first_line) > _MAX_ERROR_CHARS:
                first_line = first_line[: _MAX_ERROR_CHARS - 3] + "..."
            return first_line
    return None
