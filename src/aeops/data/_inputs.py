"""How rows of a frame become model samples, and how sample answers map back to rows.

One spec per data kind:

* :class:`TabularInputs`: one row is one sample of F features, (N, F).
* :class:`ImageInputs`: one row holds one image in an array column, (N, C, H, W).
* :class:`WindowInputs`: rows are time steps; samples are sliding windows (W, T, F),
  and a time step's score is the mean over the windows that cover it.

Specs are plain data with a JSON form, so the model bundle rebuilds them exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from aeops.data._scaling import FittedScaler


class InputSchemaError(ValueError):
    """Input rows do not have the columns, types or shapes the model was trained on."""


class InputSpec(Protocol):
    """What every data kind's spec offers."""

    kind: ClassVar[str]
    #: whether each row is one sample, so a row's answers are its sample's alone
    samples_are_rows: ClassVar[bool]

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Shape of one model sample, without the batch axis."""
        ...

    @property
    def input_columns(self) -> tuple[str, ...]:
        """The columns of a frame that the model reads."""
        ...

    def raw_values(self, frame: pd.DataFrame, allow_missing: bool = False) -> np.ndarray:
        """Checked values in original units, as the scaler sees them (2-D, float64).

        ``allow_missing=True`` lets NaN through (imputation fills it); inf never passes.
        """
        ...

    def samples(self, frame: pd.DataFrame, scaler: FittedScaler) -> np.ndarray:
        """Scaled model samples (S, *sample_shape) float32."""
        ...

    def values_to_samples(self, values: np.ndarray, scaler: FittedScaler) -> np.ndarray:
        """Scaled model samples (S, *sample_shape) float32 of :meth:`raw_values` output.

        ``values`` is consumed (scaled in place when it is float64).
        """
        ...

    def row_scores(
        self, n_rows: int, embeddings: np.ndarray, elementwise: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-row embeddings (N, L) and anomaly scores (N,) from per-sample answers."""
        ...

    def row_embeddings(self, n_rows: int, embeddings: np.ndarray) -> np.ndarray:
        """Per-row embeddings (N, L) from per-sample embeddings (S, L)."""
        ...

    def row_reconstructions(
        self, n_rows: int, reconstructions: np.ndarray, scaler: FittedScaler
    ) -> np.ndarray:
        """Per-row reconstructions in original units, (N, values per row)."""
        ...

    def row_value_scores(self, n_rows: int, elementwise: np.ndarray) -> np.ndarray:
        """Per-row scores of each value (N, values per row): which features (or
        pixels) an anomaly comes from."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, with ``kind``."""
        ...


def nested_array(cell: Any) -> np.ndarray:
    """One ndarray from a cell Parquet read as nested lists (object arrays of arrays),
    as an image column comes back. A null inside it (JSON's null, Parquet's) is NaN, a
    missing value.

    Raises:
        TypeError: for a cell that is None.
        ValueError: for a ragged cell, or a null in place of an inner list.
    """
    array = np.asarray(cell)
    if array.dtype == object:
        if array.ndim == 0:
            raise TypeError(f"{cell!r} is not an array")
        array = np.stack([_MISSING if part is None else nested_array(part) for part in array])
    return array


_MISSING = np.asarray(np.nan)


def float_matrix(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """``frame[columns]`` as a new float64 (N, F) array, column-major, NaN for missing.

    Filled column by column, which avoids pandas' block consolidation of a wide
    selection; the caller owns the result and may change it in place.
    """
    values = np.empty((len(frame), len(columns)), dtype=np.float64, order="F")
    for index, column in enumerate(columns):
        values[:, index] = frame[column].to_numpy(dtype=np.float64, na_value=np.nan)
    return values


def _checked_numeric(
    frame: pd.DataFrame, columns: list[str], allow_missing: bool = False
) -> np.ndarray:
    """``frame[columns]`` as float64, naming missing, non-numeric or non-finite columns
    (NaN passes with ``allow_missing``)."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputSchemaError(
            f"input is missing feature column(s) {missing}; the model expects {columns}"
        )
    repeated = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]} & set(columns))
    if repeated:
        raise InputSchemaError(
            f"input has more than one column named {', '.join(map(repr, repeated))}; "
            "give every column its own name"
        )
    not_numeric = [
        c
        for c in columns
        if not pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c])
    ]
    if frame.empty:  # no values to be of a type: MLflow hands empty columns over as object
        not_numeric = []
    if not_numeric:
        dtypes = [str(frame[c].dtype) for c in not_numeric]
        raise InputSchemaError(
            f"feature column(s) {not_numeric} are not numeric (dtypes {dtypes})"
            + _first_non_number(frame, not_numeric[0])
        )
    values = float_matrix(frame, columns)
    _require_finite(
        values,
        lambda index: f"row position {index[0]}, column {columns[index[1]]!r}",
        allow_missing,
    )
    return values


def _first_non_number(frame: pd.DataFrame, column: str) -> str:
    """Where ``column`` first holds a value that is not a number, as a message tail."""
    for position, value in enumerate(frame[column]):
        if value is None or value is pd.NA:
            return f"; first at row position {position}: a missing value ({value})"
        if isinstance(value, bool) or not isinstance(value, int | float | np.number):
            return (
                f"; first at row position {position} of {column!r}: {value!r} "
                f"(a {type(value).__name__}), expected a number"
            )
    return ""


def _require_finite(values: np.ndarray, where: Any, allow_missing: bool = False) -> None:
    finite = np.isfinite(values)
    if allow_missing:
        finite |= np.isnan(values)
    if not finite.all():
        first = np.argwhere(~finite)[0]
        what = "infinite value(s)" if allow_missing else "non-finite value(s) (NaN or inf)"
        raise InputSchemaError(
            f"{int((~finite).sum())} {what} in the input; "
            f"first at {where(tuple(int(i) for i in first))}"
        )


def _per_row(samples: np.ndarray) -> np.ndarray:
    """(S, ...) as (S, values per sample), no rows included (``reshape(S, -1)`` is not)."""
    return samples.reshape(len(samples), math.prod(samples.shape[1:]))


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def score_mean(elementwise: np.ndarray, axis: int) -> np.ndarray:
    """The mean of element scores along ``axis``, in float64.

    Every input reaching the model is finite, but one far enough out overflows the
    model's float32: its squared error becomes inf, or its activations inf - inf =
    NaN. An element score that overflowed counts as float32's largest number, and a
    mean that is NaN becomes that number, so the row ranks above every other and is
    flagged, rather than breaking the metrics or passing as normal (NaN is above no
    threshold). The common case costs one check of the means.
    """
    means = elementwise.mean(axis=axis, dtype=np.float64)
    if not np.isfinite(means).all():
        means = np.minimum(elementwise, _FLOAT32_MAX).mean(axis=axis, dtype=np.float64)
        means[np.isnan(means)] = _FLOAT32_MAX
    return means


def value_scores(elementwise: np.ndarray) -> np.ndarray:
    """Element scores in float64, saturated as in :func:`score_mean`."""
    return np.nan_to_num(
        elementwise.astype(np.float64), nan=_FLOAT32_MAX, posinf=_FLOAT32_MAX, copy=False
    )


def _reads_flat_as(shape: tuple[int, ...], model: tuple[int, ...]) -> bool:
    """Whether a cell of ``shape`` read flat gives the model's (C, H, W) order: its
    dimensions, ones left out, must each merge neighbouring model dimensions, as
    (C, H*W) or (H, W) for one channel do. An (H, W, C) image has as many values as
    a (C, H, W) one, but read flat its channels would mix."""
    wanted = [d for d in model if d != 1]
    position = 0
    for dim in (d for d in shape if d != 1):
        merged = 1
        while merged < dim and position < len(wanted):
            merged *= wanted[position]
            position += 1
        if merged != dim:
            return False
    return position == len(wanted)


def _rows_are_samples(
    embeddings: np.ndarray, elementwise: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Row answers when each row is one sample: its embedding and mean element score."""
    return embeddings, score_mean(_per_row(elementwise), axis=1)


@dataclass(frozen=True)
class TabularInputs:
    """Rows of numeric feature columns."""

    kind: ClassVar[str] = "tabular"
    samples_are_rows: ClassVar[bool] = True
    columns: tuple[str, ...]

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """(F,)."""
        return (len(self.columns),)

    @property
    def input_columns(self) -> tuple[str, ...]:
        """The feature columns."""
        return self.columns

    def raw_values(self, frame: pd.DataFrame, allow_missing: bool = False) -> np.ndarray:
        """The feature matrix (N, F) in the spec's column order."""
        return _checked_numeric(frame, list(self.columns), allow_missing)

    def samples(self, frame: pd.DataFrame, scaler: FittedScaler) -> np.ndarray:
        """Scaled rows (N, F) float32."""
        return self.values_to_samples(self.raw_values(frame), scaler)

    def values_to_samples(self, values: np.ndarray, scaler: FittedScaler) -> np.ndarray:
        """Scaled rows (N, F) float32."""
        return scaler.transform(values, in_place=True)

    def row_scores(
        self, n_rows: int, embeddings: np.ndarray, elementwise: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Samples are rows: the score is the mean over the sample's values."""
        return _rows_are_samples(embeddings, elementwise)

    def row_embeddings(self, n_rows: int, embeddings: np.ndarray) -> np.ndarray:
        """Samples are rows."""
        return embeddings

    def row_reconstructions(
        self, n_rows: int, reconstructions: np.ndarray, scaler: FittedScaler
    ) -> np.ndarray:
        """Reconstructed features in original units, (N, F)."""
        return scaler.inverse_transform(reconstructions)

    def row_value_scores(self, n_rows: int, elementwise: np.ndarray) -> np.ndarray:
        """Each feature's score, (N, F)."""
        return value_scores(elementwise)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"kind": self.kind, "columns": list(self.columns)}


@dataclass(frozen=True)
class ImageInputs:
    """One image per row, in an array column, flattened or shaped (C, H, W) or (H, W)."""

    kind: ClassVar[str] = "image"
    samples_are_rows: ClassVar[bool] = True
    column: str
    shape: tuple[int, int, int]

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """(C, H, W)."""
        return self.shape

    @property
    def input_columns(self) -> tuple[str, ...]:
        """The image column."""
        return (self.column,)

    def raw_values(self, frame: pd.DataFrame, allow_missing: bool = False) -> np.ndarray:
        """Pixels (N, C*H*W) float64, each image checked for size and finiteness."""
        if self.column not in frame.columns:
            raise InputSchemaError(
                f"input has no image column {self.column!r}; columns are {list(frame.columns)}"
            )
        size = int(np.prod(self.shape))
        rows = []
        for position, cell in enumerate(frame[self.column]):
            try:
                image = nested_array(cell).astype(np.float64, copy=False)
            except (TypeError, ValueError) as error:  # None, text, ragged nesting
                raise InputSchemaError(
                    f"image at row position {position} is not an array of numbers ({error})"
                ) from error
            if image.ndim > 1 and not _reads_flat_as(image.shape, self.shape):
                raise InputSchemaError(
                    f"image at row position {position} has shape {list(image.shape)}; the "
                    f"model expects {list(self.shape)} (C x H x W), or {size} values flat"
                )
            pixels = image.reshape(-1)
            if pixels.size != size:
                raise InputSchemaError(
                    f"image at row position {position} has {pixels.size} values; the model "
                    f"expects {size} (shape {list(self.shape)}, as C x H x W)"
                )
            rows.append(pixels)
        values = np.stack(rows) if rows else np.empty((0, size))
        _require_finite(values, lambda index: f"image at row position {index[0]}", allow_missing)
        return values

    def samples(self, frame: pd.DataFrame, scaler: FittedScaler) -> np.ndarray:
        """Scaled images (N, C, H, W) float32."""
        return self.values_to_samples(self.raw_values(frame), scaler)

    def values_to_samples(self, values: np.ndarray, scaler: FittedScaler) -> np.ndarray:
        """Scaled images (N, C, H, W) float32."""
        return scaler.transform(values, in_place=True).reshape(-1, *self.shape)

    def row_scores(
        self, n_rows: int, embeddings: np.ndarray, elementwise: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Samples are rows: the score is the mean over the sample's values."""
        return _rows_are_samples(embeddings, elementwise)

    def row_embeddings(self, n_rows: int, embeddings: np.ndarray) -> np.ndarray:
        """Samples are rows."""
        return embeddings

    def row_reconstructions(
        self, n_rows: int, reconstructions: np.ndarray, scaler: FittedScaler
    ) -> np.ndarray:
        """Reconstructed images, flattened C x H x W, in original pixel units."""
        return scaler.inverse_transform(_per_row(reconstructions))

    def row_value_scores(self, n_rows: int, elementwise: np.ndarray) -> np.ndarray:
        """Each pixel's score, flattened C x H x W, (N, C*H*W)."""
        return _per_row(value_scores(elementwise))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"kind": self.kind, "column": self.column, "shape": list(self.shape)}


def window_starts(n_rows: int, length: int, stride: int) -> np.ndarray:
    """Starts of windows of ``length`` every ``stride`` rows, the last flush with the end.

    Every row is covered by at least one window.

    Raises:
        InputSchemaError: if the series is shorter than one window.
    """
    if n_rows < length:
        raise InputSchemaError(
            f"a series of {n_rows} rows is shorter than one window "
            f"(data.window.length={length}); supply at least {length} rows"
        )
    starts = np.arange(0, n_rows - length + 1, stride)
    if starts[-1] != n_rows - length:
        starts = np.append(starts, n_rows - length)
    return starts


@dataclass(frozen=True)
class WindowInputs:
    """Time steps in rows (in time order); samples are windows of ``length`` steps.

    A step's score is the mean over the windows covering it, which reach up to
    ``length - 1`` steps later: a score can change as later readings arrive.
    ``smoothing`` > 1 replaces each step's score by the mean over it and the
    ``smoothing - 1`` steps before it (a trailing moving average), which steadies
    alerts on noisy series.
    """

    kind: ClassVar[str] = "timeseries"
    samples_are_rows: ClassVar[bool] = False  # a row is in several windows
    columns: tuple[str, ...]
    length: int
    stride: int
    smoothing: int = 1

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """(T, F)."""
        return (self.length, len(self.columns))

    @property
    def input_columns(self) -> tuple[str, ...]:
        """The feature columns (the timestamp only orders the rows)."""
        return self.columns

    def raw_values(self, frame: pd.DataFrame, allow_missing: bool = False) -> np.ndarray:
        """The readings (N, F) in the spec's column order."""
        return _checked_numeric(frame, list(self.columns), allow_missing)

    def _index(self, n_rows: int) -> np.ndarray:
        starts = window_starts(n_rows, self.length, self.stride)
        return starts[:, None] + np.arange(self.length)  # (W, T) row of each step

    def samples(self, frame: pd.DataFrame, scaler: FittedScaler) -> np.ndarray:
        """Scaled windows (W, T, F) float32."""
        return self.values_to_samples(self.raw_values(frame), scaler)

    def values_to_samples(self, values: np.ndarray, scaler: FittedScaler) -> np.ndarray:
        """Scaled windows (W, T, F) float32."""
        scaled = scaler.transform(values, in_place=True)
        return scaled[self._index(len(scaled))]

    def _spread(self, n_rows: int, per_step: np.ndarray) -> np.ndarray:
        """Mean over covering windows of a per-step quantity (W, T, ...) -> (N, ...)."""
        index = self._index(n_rows)
        totals = np.zeros((n_rows, *per_step.shape[2:]), dtype=np.float64)
        np.add.at(totals, index.reshape(-1), per_step.reshape(-1, *per_step.shape[2:]))
        counts = np.bincount(index.reshape(-1), minlength=n_rows)
        return totals / counts.reshape(-1, *([1] * (totals.ndim - 1)))

    def row_scores(
        self, n_rows: int, embeddings: np.ndarray, elementwise: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """A time step's score is the mean error at that step over the windows covering
        it (then smoothed); its embedding is that of the covering window whose centre
        is nearest."""
        scores = trailing_mean(
            self._spread(n_rows, score_mean(elementwise, axis=2)), self.smoothing
        )
        return self.row_embeddings(n_rows, embeddings), scores

    def row_embeddings(self, n_rows: int, embeddings: np.ndarray) -> np.ndarray:
        """A time step's embedding is that of the covering window whose centre is nearest."""
        return embeddings[nearest_window(n_rows, self.length, self.stride)]

    def row_reconstructions(
        self, n_rows: int, reconstructions: np.ndarray, scaler: FittedScaler
    ) -> np.ndarray:
        """Each step's readings averaged over covering windows, in original units (N, F)."""
        return scaler.inverse_transform(self._spread(n_rows, reconstructions))

    def row_value_scores(self, n_rows: int, elementwise: np.ndarray) -> np.ndarray:
        """Each reading's score at each step, averaged over covering windows, (N, F)."""
        return self._spread(n_rows, value_scores(elementwise))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "kind": self.kind,
            "columns": list(self.columns),
            "length": self.length,
            "stride": self.stride,
            "smoothing": self.smoothing,
        }


def nearest_window(n_rows: int, length: int, stride: int) -> np.ndarray:
    """For each row, the index of the window whose centre is nearest (the earlier one
    on a tie), in linear memory: the centres are sorted, so a row's nearest is one of
    the two around it."""
    centres = window_starts(n_rows, length, stride) + (length - 1) / 2
    if len(centres) == 1:
        return np.zeros(n_rows, dtype=np.intp)
    rows = np.arange(n_rows, dtype=np.float64)
    after = np.searchsorted(centres, rows).clip(1, len(centres) - 1)
    before = after - 1
    earlier = np.abs(rows - centres[before]) <= np.abs(centres[after] - rows)
    return np.where(earlier, before, after)


def trailing_mean(values: np.ndarray, steps: int) -> np.ndarray:
    """Mean of each value and the ``steps - 1`` before it (fewer at the start).

    Each window is summed on its own: a running sum less a shifted copy of itself
    would lose every later value to rounding once one huge score (up to the float32
    maximum that ``score_mean`` puts in place of an overflow) has entered it.
    """
    if steps <= 1 or values.size == 0:
        return values
    padded = np.concatenate([np.zeros(steps - 1), values.astype(np.float64, copy=False)])
    totals = sliding_window_view(padded, steps).sum(axis=1)
    counts = np.minimum(np.arange(1, len(values) + 1), steps)
    return totals / counts


def input_spec_from_dict(payload: dict[str, Any]) -> InputSpec:
    """Inverse of ``to_dict`` for every spec.

    Raises:
        ValueError: for an unknown kind.
    """
    kind = payload.get("kind")
    if kind == TabularInputs.kind:
        return TabularInputs(columns=tuple(payload["columns"]))
    if kind == ImageInputs.kind:
        channels, height, width = (int(size) for size in payload["shape"])
        return ImageInputs(column=payload["column"], shape=(channels, height, width))
    if kind == WindowInputs.kind:
        return WindowInputs(
            columns=tuple(payload["columns"]),
            length=payload["length"],
            stride=payload["stride"],
            smoothing=payload.get("smoothing", 1),
        )
    raise ValueError(f"unknown input kind {kind!r}; expected tabular, image or timeseries")
