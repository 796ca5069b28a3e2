"""Feature scaling fit on training rows only, stored as plain arrays."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

ScalingMethod = Literal["standard", "minmax", "robust", "none"]
SCALING_METHODS: tuple[str, ...] = ("standard", "minmax", "robust", "none")


@dataclass(frozen=True)
class FittedScaler:
    """``(x - center) / scale`` per column, with constant columns given scale 1.

    Plain arrays rather than a pickled estimator, so the bundle stores it as JSON.
    """

    method: str
    columns: tuple[str, ...]
    center: np.ndarray
    scale: np.ndarray
    #: a typical training value per column (see :attr:`typical`); None in bundles
    #: written before it was kept
    middle: np.ndarray | None = None

    @property
    def typical(self) -> np.ndarray:
        """A typical training value per column, in original units: the mean (standard,
        none), the median (robust), the middle of the range (minmax; the value itself
        for a constant column). An older bundle's scaler gives its center."""
        return self.center if self.middle is None else self.middle

    def transform(self, values: np.ndarray, in_place: bool = False) -> np.ndarray:
        """Scale a (N, F) array in the column order of :attr:`columns`, as float32.

        Each value's result depends on the value alone (see :meth:`transform_columns`),
        whatever the array's dtype and layout, so every caller gets identical samples
        for the same numbers. ``in_place=True`` lets a caller that owns a float64 array
        skip a copy. A column-major input (one column per feature, as tables are read)
        goes column by column.
        """
        if values.ndim == 2 and values.flags.f_contiguous and not values.flags.c_contiguous:
            return self.transform_columns([values[:, j] for j in range(values.shape[1])])
        if not self._float32_columns.all():  # some columns always take float64
            columns = [values[:, j] for j in range(values.shape[1])]
            return np.ascontiguousarray(self.transform_columns(columns))
        center32, scale32 = self._float32_center_scale
        narrow, inexact = self._float32_numbers(values)
        with np.errstate(over="ignore"):
            scaled = narrow - center32  # a new array: the caller's values stay as they are
            scaled /= scale32
        wide = self._needs_float64(values, inexact, scaled)
        if wide is not None:
            owned = in_place and values.dtype == np.float64
            exact = values if owned else np.array(values, dtype=np.float64)
            with np.errstate(over="ignore", invalid="ignore"):
                exact -= self.center
                exact /= self.scale
                np.copyto(scaled, exact, casting="same_kind", where=wide)
        return scaled

    def transform_columns(
        self, columns: list[np.ndarray], out: np.ndarray | None = None
    ) -> np.ndarray:
        """Scale F columns of N values (any numeric dtype) into a column-major (N, F)
        float32 array (``out`` when given), one column at a time, so each column's work
        stays in the CPU cache.

        A value that is a float32 number (every value of a float32 column, most of an
        integer one) is scaled in float32: ``(x - center) / scale`` with the center and
        scale rounded to float32. Rounding the center costs at most half its ulp over
        the scale, in absolute terms: near the center, about what the value's own
        rounding to float32 cost. It is a quarter of float64's cost. Any other value,
        and any whose float32 result would overflow, is scaled in float64 and rounded
        once. A result depends on the value alone, not on its dtype, so a float32
        column widened to float64 on its way (as MLflow widens served inputs) gets the
        same samples as on the batch jobs' Arrow path.

        Raises:
            ValueError: if the number of columns is not the scaler's, or ``out`` is not
                a float32 array of the result's shape.
        """
        per_column = self.center.shape[0] > 1
        if per_column and len(columns) != self.center.shape[0]:
            raise ValueError(
                f"the scaler was fit on {self.center.shape[0]} columns "
                f"{list(self.columns)}; got {len(columns)}"
            )
        rows = len(columns[0]) if columns else 0
        shape = (rows, len(columns))
        if out is not None and (out.shape != shape or out.dtype != np.float32):
            raise ValueError(f"out must be a {shape} float32 array; got {out.shape} {out.dtype}")
        scaled = np.empty(shape, dtype=np.float32, order="F") if out is None else out
        center32, scale32 = self._float32_center_scale
        work: np.ndarray | None = None
        for index, column in enumerate(columns):
            source = index if per_column else 0
            target = scaled[:, index]
            wide: np.ndarray | None = None  # where float64 applies; None: everywhere
            if self._float32_columns[source]:
                narrow, inexact = self._float32_numbers(column)
                if inexact is None or not inexact.all():
                    with np.errstate(over="ignore"):
                        np.subtract(narrow, center32[source], out=target)
                        target /= scale32[source]
                    wide = self._needs_float64(column, inexact, target)
                    if wide is None:
                        continue
            if work is None:
                work = np.empty(rows, dtype=np.float64)
            np.copyto(work, column)
            with np.errstate(over="ignore", invalid="ignore"):  # beyond float32: inf, as ever
                work -= self.center[source]
                work /= self.scale[source]
                np.copyto(target, work, casting="same_kind", where=True if wide is None else wide)
        return scaled

    @staticmethod
    def _float32_numbers(values: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """``values`` as float32, and where they are not float32 numbers (None: all
        are). A float32 array is taken as it is; any other is compared after the cast
        (as float64, so an integer beyond 2^53 counts as its float64 value)."""
        if values.dtype == np.float32:
            return values, None
        with np.errstate(over="ignore", invalid="ignore"):
            narrow = values.astype(np.float32)
            exact = narrow == values
        return narrow, None if exact.all() else ~exact

    @staticmethod
    def _needs_float64(
        values: np.ndarray, inexact: np.ndarray | None, scaled: np.ndarray
    ) -> np.ndarray | None:
        """Where float32 arithmetic does not apply: values that are not float32
        numbers (``inexact``; NaN among them), and finite values whose float32 result
        overflowed. None when it applies everywhere, the common case."""
        finite = np.isfinite(scaled)
        if inexact is None and finite.all():
            return None
        overflowed = ~finite & ~np.isinf(values)  # NaN too: NaN either way
        return overflowed if inexact is None else inexact | overflowed

    @functools.cached_property
    def _float32_center_scale(self) -> tuple[np.ndarray, np.ndarray]:
        """The center and scale rounded to float32, for values that are float32."""
        with np.errstate(over="ignore"):
            return self.center.astype(np.float32), self.scale.astype(np.float32)

    @functools.cached_property
    def _float32_columns(self) -> np.ndarray:
        """Which columns' center and scale survive rounding to float32 (finite, and a
        scale that is not zero); the others are scaled in float64 whatever the input."""
        center, scale = self._float32_center_scale
        return np.isfinite(center) & np.isfinite(scale) & (scale != 0)

    def inverse_transform(self, values: np.ndarray) -> np.ndarray:
        """Map scaled values (N, F) back to original units, as float64."""
        return values.astype(np.float64) * self.scale + self.center

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "method": self.method,
            "columns": list(self.columns),
            "center": self.center.tolist(),
            "scale": self.scale.tolist(),
            **({} if self.middle is None else {"middle": self.middle.tolist()}),
        }

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> FittedScaler:
        """Inverse of :meth:`to_dict`."""
        return cls(
            method=payload["method"],
            columns=tuple(payload["columns"]),
            center=np.asarray(payload["center"], dtype=np.float64),
            scale=np.asarray(payload["scale"], dtype=np.float64),
            middle=None if "middle" not in payload else np.asarray(payload["middle"], np.float64),
        )


def fit_scaler(
    values: np.ndarray, columns: list[str], method: str, per_column: bool = True
) -> FittedScaler:
    """Fit a scaler of ``method`` on training values (N, F).

    A column whose spread is zero (constant) gets scale 1, so it maps to a constant
    instead of inf or NaN. With ``per_column=False`` one center and scale are fit over
    all values (pixels of images), and ``columns`` names the single value column.

    Raises:
        ValueError: if ``method`` is unknown or there are no rows.
    """
    if method not in SCALING_METHODS:
        raise ValueError(
            f"scaling.method={method!r} is unknown; choose one of: {', '.join(SCALING_METHODS)}"
        )
    if values.shape[0] == 0:
        raise ValueError("cannot fit a scaler on zero training rows")
    values = values.astype(np.float64, copy=False)
    if not per_column:
        values = values.reshape(-1, 1)
    n_features = values.shape[1]
    middle = values.mean(axis=0)
    if method == "standard":
        center, spread = middle, values.std(axis=0)
    elif method == "minmax":
        center = values.min(axis=0)
        spread = values.max(axis=0) - center
        middle = center + spread / 2
    elif method == "robust":
        q1, median, q3 = np.percentile(values, [25, 50, 75], axis=0)
        center, spread = median, q3 - q1
        middle = median
        # A column with a zero IQR but some spread still deserves a finite scale.
        fallback = values.std(axis=0)
        spread = np.where(spread > 0, spread, fallback)
    else:
        center, spread = np.zeros(n_features), np.ones(n_features)
    scale = np.where(spread > np.finfo(np.float64).eps, spread, 1.0)
    return FittedScaler(
        method=method, columns=tuple(columns), center=center, scale=scale, middle=middle
    )
