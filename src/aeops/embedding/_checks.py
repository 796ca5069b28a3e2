"""The bundle's validation suite, evaluated on record batches at numpy speed.

Great Expectations takes about a second per call whatever the batch size, which
would dominate a streaming job. The expectations aeops builds are simple per-column
predicates, so the engine compiles the same suite into vectorised checks. A suite
holding any other expectation type is refused rather than silently half-checked.
Checks that only make sense on the whole training table (row count, the label) are
left out at scoring time, and the id column is optional.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from aeops.data._inputs import float_matrix
from aeops.validation import expectation_text, missing_column_text, with_image_value_count

_ROW_CHECKS = {
    "expect_column_values_to_not_be_null",
    "expect_column_values_to_be_between",
    "expect_column_values_to_be_unique",
}
_COLUMN_CHECKS = {"expect_column_to_exist", "expect_column_values_to_be_in_type_list"}
_SKIPPED = {"expect_table_row_count_to_be_between"}


class BatchValidationError(ValueError):
    """A batch of input rows failed the bundle's suite."""

    @classmethod
    def of(cls, rows: str, result: BatchResult) -> BatchValidationError:
        """The error for ``rows`` (where they are: file and row range) and every
        failure in ``result``."""
        failures = result.column_failures + result.row_failures
        return cls(
            f"{rows} failed the model's validation suite:\n"
            + "\n".join(f"  - {f.describe()}" for f in failures)
        )


@dataclass(frozen=True)
class BatchFailure:
    """One failed expectation in one batch."""

    expectation: str
    column: str
    observed: str
    sample_rows: list[int] = field(default_factory=list)
    sample_values: list[Any] = field(default_factory=list)
    expected: str = ""
    # A row check's failing rows of the batch, (N,) bool; None for a column failure.
    rows: np.ndarray | None = field(default=None, repr=False, compare=False)

    def describe(self) -> str:
        """One line for an error message."""
        text = f"{self.expectation} (column {self.column!r}): {self.observed}"
        if self.sample_rows:
            text += f"; sample rows {self.sample_rows}"
        if self.sample_values:
            text += f"; sample values {self.sample_values}"
        return text

    def row_reason(self) -> str:
        """What one failing row did wrong, without the batch's counts and samples."""
        return f"{self.expectation} (column {self.column!r}): expected {self.expected}"


@dataclass(frozen=True)
class BatchResult:
    """Outcome of one batch: fatal column failures, and a mask of rows that failed."""

    column_failures: list[BatchFailure]
    row_failures: list[BatchFailure]
    bad_rows: np.ndarray  # (N,) bool

    @property
    def success(self) -> bool:
        """True when nothing failed."""
        return not self.column_failures and not self.bad_rows.any()

    def reasons_of_bad_rows(self) -> list[str]:
        """For each bad row in order, the row checks it fails, joined by ``; ``."""
        reasons: list[list[str]] = [[] for _ in range(int(self.bad_rows.sum()))]
        for failure in self.row_failures:
            if failure.rows is None:
                continue
            for index in np.flatnonzero(failure.rows[self.bad_rows]):
                reasons[index].append(failure.row_reason())
        return ["; ".join(reason) for reason in reasons]


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    return value


@dataclass(frozen=True)
class _Check:
    expectation: str
    column: str
    kwargs: dict[str, Any]


@dataclass(frozen=True)
class MatrixPlan:
    """A suite as whole-matrix bounds over the feature columns (see ``matrix_plan``).

    Attributes:
        low, high: per feature, the tightest of its between-checks (±inf when none).
        allowed_types: per feature, the dtype names its type check allows (None: any).
        id_unique: whether ids must be unique within a batch.
    """

    low: np.ndarray
    high: np.ndarray
    allowed_types: list[set[str] | None]
    id_unique: bool


class CompiledSuite:
    """Vectorised checks equivalent to a suite built by :func:`aeops.validation.build_suite`."""

    def __init__(self, suite: dict[str, Any], optional_columns: set[str]) -> None:
        """Compile ``suite`` (its JSON form); ``optional_columns`` may be absent.

        Raises:
            ValueError: for an expectation type the engine does not know.
        """
        suite = with_image_value_count(suite)  # a bundle's from before image_values
        roles = suite.get("meta", {}).get("aeops", {})
        skip = {roles.get("label_column")} - {None}
        self._optional = set(optional_columns)
        self._checks: list[_Check] = []
        for expectation in suite.get("expectations", []):
            kind, kwargs = expectation["type"], dict(expectation.get("kwargs", {}))
            column = kwargs.pop("column", None)
            if kind in _SKIPPED or column in skip:
                continue
            if kind not in _ROW_CHECKS | _COLUMN_CHECKS:
                raise ValueError(
                    f"the bundle's suite holds {kind!r}, which the streaming engine cannot "
                    "check; retrain with this version of aeops"
                )
            self._checks.append(_Check(kind, str(column), kwargs))

    def matrix_plan(self, features: tuple[str, ...], id_column: str) -> MatrixPlan | None:
        """The suite as bounds on a float matrix of ``features``, or None when it holds a
        check that is not a feature's existence, type, not-null or range check, or the
        id's existence, not-null or uniqueness (such a suite needs :meth:`evaluate`).

        A row passes every check of the plan exactly when each value v of feature j is
        not NaN and ``low[j] <= v <= high[j]``, and the id column holds no null.
        """
        where = {column: index for index, column in enumerate(features)}
        low = np.full(len(features), -np.inf)
        high = np.full(len(features), np.inf)
        allowed: list[set[str] | None] = [None] * len(features)
        id_unique = False
        for check in self._checks:
            if check.column == id_column:
                if check.expectation == "expect_column_values_to_be_unique":
                    id_unique = True
                elif check.expectation not in (
                    "expect_column_to_exist",
                    "expect_column_values_to_not_be_null",
                ):
                    return None
                continue
            index = where.get(check.column)
            if index is None:
                return None
            if check.expectation == "expect_column_values_to_be_between":
                if check.kwargs.get("min_value") is not None:
                    low[index] = max(low[index], float(check.kwargs["min_value"]))
                if check.kwargs.get("max_value") is not None:
                    high[index] = min(high[index], float(check.kwargs["max_value"]))
                if check.kwargs.get("strict_min") or check.kwargs.get("strict_max"):
                    return None
            elif check.expectation == "expect_column_values_to_be_in_type_list":
                allowed[index] = set(check.kwargs.get("type_list", []))
            elif check.expectation not in (
                "expect_column_to_exist",
                "expect_column_values_to_not_be_null",
            ):
                return None
        return MatrixPlan(low, high, allowed, id_unique)

    def evaluate(self, frame: pd.DataFrame, row_offset: int = 0) -> BatchResult:
        """Check ``frame`` (one batch); row numbers in failures count from ``row_offset``.

        Numeric columns are checked together on one float matrix; a column with
        another dtype (text where numbers belong) is checked on its own.
        """
        column_failures: list[BatchFailure] = []
        row_checks: list[_Check] = []
        dtypes = frame.dtypes.to_dict()  # one lookup, not a column access per check
        for check in self._checks:
            if check.column not in dtypes:
                if check.expectation == "expect_column_to_exist" and (
                    check.column not in self._optional
                ):
                    column_failures.append(
                        BatchFailure(
                            check.expectation,
                            check.column,
                            missing_column_text(check.column, str(list(frame.columns))),
                        )
                    )
            elif check.expectation == "expect_column_values_to_be_in_type_list":
                if not _type_allowed(dtypes[check.column], check):
                    column_failures.append(_type_failure(frame[check.column], check, row_offset))
            elif check.expectation in _ROW_CHECKS:
                row_checks.append(check)
        masks = _row_masks(frame, row_checks, dtypes)
        row_failures: list[BatchFailure] = []
        bad = np.zeros(len(frame), dtype=bool)
        for check, mask in zip(row_checks, masks, strict=True):
            if mask is None or not mask.any():
                continue
            positions = np.flatnonzero(mask)
            values = frame[check.column].to_numpy()
            expected = expectation_text(check.expectation, check.kwargs)
            row_failures.append(
                BatchFailure(
                    check.expectation,
                    check.column,
                    f"expected {expected}; {int(mask.sum())} of {len(frame)} rows fail",
                    sample_rows=[int(p) + row_offset for p in positions[:5]],
                    sample_values=[_jsonable(v) for v in values[positions[:5]]],
                    expected=expected,
                    rows=mask,
                )
            )
            bad |= mask
        return BatchResult(column_failures, row_failures, bad)


def _type_allowed(dtype: Any, check: _Check) -> bool:
    allowed = check.kwargs.get("type_list", [])
    return str(dtype) in allowed or type(dtype).__name__ in allowed


def _type_failure(values: pd.Series, check: _Check, row_offset: int) -> BatchFailure:
    """A non-numeric column, with the rows and values that are not numbers."""
    not_numbers = (
        pd.to_numeric(values, errors="coerce").isna().to_numpy() & values.notna().to_numpy()
    )
    positions = np.flatnonzero(not_numbers)[:5]
    return BatchFailure(
        check.expectation,
        check.column,
        f"dtype {values.dtype}, expected a numeric dtype",
        sample_rows=[int(p) + row_offset for p in positions],
        sample_values=[_jsonable(v) for v in values.to_numpy()[positions]],
    )


def _row_masks(
    frame: pd.DataFrame, checks: list[_Check], dtypes: dict[Any, Any]
) -> list[np.ndarray | None]:
    """The failing rows of each row check; numeric columns share one matrix."""
    numeric = sorted(
        {c.column for c in checks if getattr(dtypes[c.column], "kind", "O") in ("i", "u", "f")}
    )
    where = {column: index for index, column in enumerate(numeric)}
    matrix = float_matrix(frame, numeric)  # (N, C)
    missing = np.isnan(matrix)
    masks: list[np.ndarray | None] = []
    for check in checks:
        if check.column not in where or check.expectation == "expect_column_values_to_be_unique":
            values = frame[check.column]
            masks.append(_ROW_PREDICATES[check.expectation](values, check.kwargs))
            continue
        index = where[check.column]
        if check.expectation == "expect_column_values_to_not_be_null":
            masks.append(missing[:, index])
            continue
        column = matrix[:, index]
        low, high = check.kwargs.get("min_value"), check.kwargs.get("max_value")
        outside = np.zeros(len(column), dtype=bool)
        if low is not None:
            outside |= column < low
        if high is not None:
            outside |= column > high
        masks.append(outside & ~missing[:, index])
    return masks


def _nulls(values: pd.Series, kwargs: dict[str, Any]) -> np.ndarray:
    return values.isna().to_numpy()


def _out_of_bounds(values: pd.Series, kwargs: dict[str, Any]) -> np.ndarray:
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    present = ~np.isnan(numbers)  # nulls are the not-null check's to report
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    with np.errstate(invalid="ignore"):
        outside = np.zeros(len(numbers), dtype=bool)
        if low is not None:
            outside |= numbers < low
        if high is not None:
            outside |= numbers > high
    return present & outside


def _duplicates(values: pd.Series, kwargs: dict[str, Any]) -> np.ndarray:
    return values.duplicated(keep=False).to_numpy()


_ROW_PREDICATES: dict[str, Callable[[pd.Series, dict[str, Any]], np.ndarray]] = {
    "expect_column_values_to_not_be_null": _nulls,
    "expect_column_values_to_be_between": _out_of_bounds,
    "expect_column_values_to_be_unique": _duplicates,
}
