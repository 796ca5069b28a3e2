"""What a suite checks for each data kind: the frame's columns, plus derived columns.

Great Expectations checks columns of scalars, so images and time series are
validated through derived numeric columns computed the same way at training and at
scoring time: each image's channels, height, width, value count and pixel range; each
time step's distance to the previous one (monotonic timestamps, no gap beyond a
tolerance).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from aeops.data import DataConfig, image_values, infer_image_shape, resolve_feature_columns

#: Derived columns; their names are what a failure message shows.
STEP_COLUMN = "timestamp_step_seconds"
MIN_STEP_SECONDS = 1e-6
IMAGE_COLUMNS = (
    "image_channels",
    "image_height",
    "image_width",
    "image_values",
    "image_min",
    "image_max",
)
# Derived columns that are null only for bad data, even where feature values may be
# missing: a missing or out-of-order timestamp, an image that is not an array.
NEVER_MISSING_FACTS = (STEP_COLUMN, *IMAGE_COLUMNS[:4])


def missing_column_text(column: str | None, present: str) -> str:
    """What a failure says of a missing column; a derived one says what it comes from,
    since the input never had a column of that name."""
    if column == STEP_COLUMN:
        return (
            "column missing: the steps between the series' timestamps, and the input has "
            f"no data.timestamp_column; present columns: {present}"
        )
    return f"column missing; present columns: {present}"


@dataclass(frozen=True)
class ValidationView:
    """A frame ready for a suite, and what the suite should expect of it."""

    frame: pd.DataFrame
    feature_columns: list[str]
    bounds: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    min_rows: int = 1


def _step_seconds(timestamps: pd.Series) -> pd.Series:
    """Seconds since the previous time step (the first step copies the second's)."""
    if pd.api.types.is_datetime64_any_dtype(timestamps):
        steps = timestamps.diff().dt.total_seconds()
    else:
        steps = pd.to_numeric(timestamps, errors="coerce").astype("float64").diff()
    if len(steps) > 1:
        steps.iloc[0] = steps.iloc[1]
    return steps


def _max_gap_seconds(steps: pd.Series, configured: str | None) -> float | None:
    if configured is not None:
        return float(pd.Timedelta(configured).total_seconds())
    median = float(np.nanmedian(steps.to_numpy())) if steps.notna().any() else 0.0
    return 3.0 * median if median > 0 else None


def _image_facts(
    cells: pd.Series, shape: tuple[int, int, int], missing_pixels: bool = False
) -> pd.DataFrame:
    """Channels, height, width, value count, min and max of each image.

    A flat array has no shape of its own: it is read as the expected shape, and only
    its value count can be wrong. With ``missing_pixels`` the min and max are those of
    the present pixels (null only when every pixel is missing); otherwise a missing
    pixel makes them null, which the suite's not-null checks report."""
    low_of, high_of = (np.nanmin, np.nanmax) if missing_pixels else (np.min, np.max)
    facts = []
    for cell in cells:
        array = image_values(cell)
        if array is None:  # ragged, or not numbers: null facts name the row
            facts.append((np.nan,) * len(IMAGE_COLUMNS))
            continue
        if array.ndim == 2:
            dims = (1, *array.shape)
        elif array.ndim == 3:
            dims = array.shape
        elif array.ndim == 1:
            dims = shape
        else:  # 0-d or 4-d and more: no image shape can be read
            dims = (np.nan, np.nan, np.nan)
        present = array.size and not (missing_pixels and np.isnan(array).all())
        low = float(low_of(array)) if present else np.nan
        high = float(high_of(array)) if present else np.nan
        facts.append((*dims, array.size, low, high))
    return pd.DataFrame(facts, columns=list(IMAGE_COLUMNS), index=cells.index, dtype="float64")


def inferred_shape_problem(view: ValidationView, config: DataConfig) -> str | None:
    """Why an image shape inferred from the first image may be the wrong one: most
    images have another shape (the first is the odd one out, and validation would
    blame all the others); None when it is set, or most images have it."""
    if config.kind != "image" or config.image_shape is not None:
        return None
    if not set(IMAGE_COLUMNS[:3]) <= set(view.frame.columns):
        return None
    dims = view.frame[list(IMAGE_COLUMNS[:3])].dropna()
    if dims.empty:
        return None
    counts = dims.value_counts()
    common = [int(size) for size in counts.index[0]]
    first = [int(size) for size in dims.iloc[0]]
    if first == common or counts.iloc[0] <= len(dims) / 2:
        return None
    ids = view.frame.get(config.id_column)
    which = f"id {ids.loc[dims.index[0]]}" if ids is not None else f"row {dims.index[0]}"
    return (
        f"the image shape was inferred from the first image ({which}), which is {first}, "
        f"but {int(counts.iloc[0])} of {len(dims)} images are {common}: fix or drop that "
        f"image, or set data.image_shape: {common}"
    )


def validation_view(
    frame: pd.DataFrame, config: DataConfig, missing_values: bool = False
) -> ValidationView:
    """The frame and expectations that validate data of ``config.kind``.

    Args:
        frame: the ingested raw frame (not changed).
        config: the ``data`` block; a time series also gets ``max_gap`` (default: three
            times the median step) and at least one window of rows; images get the
            configured or inferred shape and ``pixel_range``.
        missing_values: the data may miss feature values (imputation): an image's
            pixel range is then checked on its present pixels.
    """
    bounds = dict(config.bounds)
    if config.kind == "image":
        if config.image_column not in frame.columns:  # the suite names the missing column
            return ValidationView(frame, [config.image_column], bounds, config.min_rows)
        shape = infer_image_shape(frame, config)
        derived = frame.drop(columns=[config.image_column])
        derived = derived.join(_image_facts(frame[config.image_column], shape, missing_values))
        for name, size in zip(IMAGE_COLUMNS[:4], (*shape, int(np.prod(shape))), strict=True):
            bounds[name] = (size, size)
        if config.pixel_range is not None:
            low, high = config.pixel_range
            bounds["image_min"] = (low, None)
            bounds["image_max"] = (None, high)
        return ValidationView(derived, list(IMAGE_COLUMNS), bounds, config.min_rows)

    features = resolve_feature_columns(frame, config)
    if config.kind == "timeseries" and config.timestamp_column in frame.columns:
        derived = frame.copy()
        steps = _step_seconds(frame[config.timestamp_column])
        derived[STEP_COLUMN] = steps
        # A step must be positive (strictly increasing timestamps) and at most max_gap.
        bounds[STEP_COLUMN] = (MIN_STEP_SECONDS, _max_gap_seconds(steps, config.max_gap))
        min_rows = max(config.min_rows, config.window.length)
        return ValidationView(derived, [*features, STEP_COLUMN], bounds, min_rows)
    return ValidationView(frame, features, bounds, config.min_rows)
