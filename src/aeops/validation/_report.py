"""Validation results in plain, JSON-able form and the error raised for failing frames."""

from __future__ import annotations

import datetime as dt
import decimal
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

_MAX_LISTED = 5


def to_jsonable(value: Any) -> Any:
    """Convert a value into something ``json.dumps(..., allow_nan=False)`` accepts.

    Numpy scalars become Python scalars, NaN becomes ``"nan"``, infinities become ``"inf"``
    and ``"-inf"``, pandas missing markers become ``"nan"``, timestamps become ISO strings,
    mappings and sequences are converted element-wise, anything else becomes ``str(value)``.

    Args:
        value: Any value, typically taken from a GX result or a data frame cell.

    Returns:
        A JSON-serialisable equivalent of ``value``.
    """
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if value is pd.NA:
        return "nan"
    if value is pd.NaT:
        return "NaT"
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return to_jsonable(float(value))
    if isinstance(value, Mapping):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset | np.ndarray | pd.Index | pd.Series):
        return [to_jsonable(item) for item in value]
    return str(value)


def _short_list(values: list[Any]) -> str:
    shown = ", ".join(repr(value) for value in values[:_MAX_LISTED])
    more = f", ... (+{len(values) - _MAX_LISTED} more)" if len(values) > _MAX_LISTED else ""
    return f"[{shown}{more}]"


@dataclass(frozen=True)
class FailedExpectation:
    """One failed (or not evaluable) expectation, summarised for humans and machines.

    Attributes:
        expectation: GX expectation type, e.g. ``"expect_column_values_to_not_be_null"``.
        column: Column the expectation is about, or ``None`` for table-level expectations.
        expected: Short human text of what was expected, e.g. ``"no null values"``.
        observed: Short human text of what was found, e.g. ``"3 null values (0.8%)"``.
        sample_values: A few offending values, JSON-able (``"nan"``/``"inf"`` as strings).
        sample_ids: Ids (from the id column) of a few offending rows, where available.
    """

    expectation: str
    column: str | None
    expected: str
    observed: str
    sample_values: list[Any] = field(default_factory=list)
    sample_ids: list[Any] = field(default_factory=list)

    def describe(self) -> str:
        """Describe the failure on one line.

        Returns:
            Text such as ``"expect_column_values_to_not_be_null (column 'f1'): expected no
            null values, observed 2 null values (0.5%); sample ids [3, 9]; sample values
            ['nan', 'nan']"``.
        """
        where = f" (column {self.column!r})" if self.column is not None else ""
        text = f"{self.expectation}{where}: expected {self.expected}, observed {self.observed}"
        if self.sample_ids and self.sample_ids != self.sample_values:
            text += f"; sample ids {_short_list(self.sample_ids)}"
        if self.sample_values:
            text += f"; sample values {_short_list(self.sample_values)}"
        return text

    def to_dict(self) -> dict[str, Any]:
        """Return the failure as a JSON-serialisable dict.

        Returns:
            Dict with the dataclass fields; values are passed through :func:`to_jsonable`.
        """
        return {
            "expectation": self.expectation,
            "column": self.column,
            "expected": self.expected,
            "observed": self.observed,
            "sample_values": to_jsonable(self.sample_values),
            "sample_ids": to_jsonable(self.sample_ids),
        }


@dataclass(frozen=True)
class ValidationReport:
    """Outcome of validating one frame against one suite.

    Attributes:
        source: Where the frame came from (a path or dataset name), used in messages.
        success: Whether every expectation passed.
        evaluated: Number of expectations GX evaluated (the suite's size).
        failures: Failed expectations in suite order; expectations that could not run
            because their column is missing are folded into that column's
            ``expect_column_to_exist`` failure.
        gx_result: GX's own suite result as a JSON-able dict (NaN/inf replaced by strings).
    """

    source: str
    success: bool
    evaluated: int
    failures: tuple[FailedExpectation, ...]
    gx_result: dict[str, Any]

    @property
    def failed(self) -> int:
        """Number of expectations GX counted as unsuccessful (before folding)."""
        statistics = self.gx_result.get("statistics")
        if isinstance(statistics, Mapping):
            count = statistics.get("unsuccessful_expectations")
            if isinstance(count, int):
                return count
        return len(self.failures)

    def summary(self) -> str:
        """Return the first line of the failure message.

        Returns:
            Text such as ``"data/01_raw/demo.csv failed validation: 2 of 95 expectations
            failed"`` or ``"... passed validation: 95 expectations"``.
        """
        if self.success:
            return f"{self.source} passed validation: {self.evaluated} expectations"
        shown = len(self.failures)
        # Checks that could not run on a column whose type failed are folded into that
        # failure's line ("1 dependent expectation not evaluated"), not counted again.
        dependent = self.failed - shown if 0 < shown < self.failed else 0
        folded = f", and {dependent} dependent on them not evaluated" if dependent else ""
        return (
            f"{self.source} failed validation: {self.failed - dependent} of "
            f"{self.evaluated} expectations failed{folded}"
        )

    def message(self) -> str:
        """Return the summary line followed by one line per failure.

        Returns:
            Multi-line text; each failure line is :meth:`FailedExpectation.describe`.
        """
        lines = [self.summary()]
        lines.extend(f"  - {failure.describe()}" for failure in self.failures)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Return the report as a JSON-serialisable dict (also with ``allow_nan=False``).

        Returns:
            Dict with ``source``, ``success``, ``evaluated``, ``failed``, ``failures`` (list of
            dicts) and ``gx_result``.
        """
        return {
            "source": self.source,
            "success": self.success,
            "evaluated": self.evaluated,
            "failed": self.failed,
            "failures": [failure.to_dict() for failure in self.failures],
            "gx_result": to_jsonable(self.gx_result),
        }

    def raise_for_failures(self) -> None:
        """Raise :class:`DataValidationError` if the frame failed its suite.

        Raises:
            DataValidationError: When ``success`` is false.
        """
        if not self.success:
            raise DataValidationError(self)


class DataValidationError(ValueError):
    """Raised when a frame fails its suite.

    ``str(error)`` names the data source on its first line and lists each failed
    expectation on its own line.

    Attributes:
        report: The full :class:`ValidationReport`.
    """

    def __init__(self, report: ValidationReport) -> None:
        """Create the error from a failed report.

        Args:
            report: The report of the failed validation.
        """
        super().__init__(report.message())
        self.report = report

    def __reduce__(self) -> tuple[type[DataValidationError], tuple[ValidationReport]]:
        """Support pickling (e.g. across Kedro's ParallelRunner workers)."""
        return (type(self), (self.report,))
