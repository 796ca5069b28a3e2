"""Per data kind: the input spec of a frame, its scaler, and its split."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from aeops.data._config import DataConfig
from aeops.data._ingestion import DataIngestionError, resolve_feature_columns
from aeops.data._inputs import (
    ImageInputs,
    InputSchemaError,
    InputSpec,
    TabularInputs,
    WindowInputs,
    nested_array,
)
from aeops.data._scaling import FittedScaler, fit_scaler
from aeops.data._split import split_frame

_CHANNEL_COUNTS = (1, 3, 4)  # gray, RGB, RGBA


def infer_image_shape(frame: pd.DataFrame, config: DataConfig) -> tuple[int, int, int]:
    """(C, H, W) from ``data.image_shape``, else from the first image's array shape.

    Null cells, and cells that are no array of numbers (ragged, text), are passed
    over: validation names their rows.

    Raises:
        DataIngestionError: if the shape can be neither read nor inferred.
    """
    if config.image_shape is not None:
        return config.image_shape
    column = config.image_column
    first = None if column not in frame.columns else _first_image(frame[column])
    if first is None:
        raise DataIngestionError(
            f"no images to infer a shape from in column {column!r}; set data.image_shape"
        )
    if first.ndim == 2:
        return (1, *first.shape)
    if first.ndim == 3:
        # Ambiguous shapes ((2, 8, 1): two channels of 8 x 1) are read as (C, H, W).
        if first.shape[-1] in _CHANNEL_COUNTS and first.shape[0] > max(_CHANNEL_COUNTS):
            raise DataIngestionError(
                f"the first image in column {column!r} has shape {list(first.shape)}, "
                "which looks channels-last (H, W, C); aeops reads (C, H, W): move the "
                "channel axis first (np.moveaxis(images, -1, 1) for a stack), or set "
                f"data.image_shape: {list(first.shape)} if it really has "
                f"{first.shape[0]} channels"
            )
        return tuple(first.shape)
    raise DataIngestionError(
        f"the first image in column {column!r} has shape {list(first.shape)}; store images "
        "as (H, W) or (C, H, W) arrays, or set data.image_shape for flattened pixels"
    )


def image_values(cell: object) -> np.ndarray | None:
    """An image cell as a float64 array; None when it is no array of numbers (ragged,
    text), which validation reports with the row's id."""
    try:  # Parquet's nested lists come back as object arrays of arrays
        return nested_array(cell).astype(np.float64)
    except (TypeError, ValueError):
        return None


def _first_image(cells: pd.Series) -> np.ndarray | None:
    """The first cell that is an array of numbers, or None."""
    for cell in cells:
        array = image_values(cell)
        if array is not None and array.ndim > 0:
            return array
    return None


def make_input_spec(frame: pd.DataFrame, config: DataConfig) -> InputSpec:
    """How this kind of data becomes model samples, resolved against ``frame``."""
    if config.kind == "image":
        return ImageInputs(column=config.image_column, shape=infer_image_shape(frame, config))
    columns = tuple(resolve_feature_columns(frame, config))
    if config.kind == "timeseries":
        window = config.window
        return WindowInputs(columns, window.length, window.stride, window.score_smoothing)
    return TabularInputs(columns)


def fit_input_scaler(spec: InputSpec, train_frame: pd.DataFrame, method: str) -> FittedScaler:
    """Fit the scaler on the training rows: per column, or over all pixels for images.

    Raises:
        DataIngestionError: if the training rows are all the same: each would
            reconstruct perfectly, and every score would tie.
    """
    values = spec.raw_values(train_frame)
    flat = values.reshape(len(values), -1)
    if len(flat) > 1 and (flat == flat[0]).all():
        rows = "images" if isinstance(spec, ImageInputs) else "rows (every feature is constant)"
        raise DataIngestionError(
            f"all {len(flat)} training {rows} are the same: there is nothing for the model "
            "to learn, and every row would score the same. Check the data, or "
            "data.feature_columns"
        )
    if isinstance(spec, ImageInputs):
        return fit_scaler(values, [spec.column], method, per_column=False)
    return fit_scaler(values, list(spec.columns), method)  # type: ignore[attr-defined]


def split_by_kind(
    frame: pd.DataFrame, config: DataConfig
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Rows split at random (stratified) for tables and images; by time for series.

    A series is cut into three contiguous segments in time order (train, validation,
    test), and windows are later built inside each segment, so no window spans two
    parts and nothing from the future leaks into training.

    Raises:
        ValueError: if a part would be empty, or a series segment shorter than a window.
    """
    if config.kind != "timeseries":
        return split_frame(frame, config.split, config.label_column)
    n_rows = len(frame)
    n_test = round(n_rows * config.split.test)
    n_validation = round(n_rows * config.split.validation)
    n_train = n_rows - n_test - n_validation
    parts = {"train": n_train, "validation": n_validation, "test": n_test}
    short = {name: size for name, size in parts.items() if size < config.window.length}
    if short:
        raise InputSchemaError(
            f"a series of {n_rows} rows splits into segments of {parts} rows, but "
            f"{sorted(short)} are shorter than one window (data.window.length="
            f"{config.window.length}); supply a longer series or shorter windows"
        )
    bounds = np.cumsum([0, n_train, n_validation, n_test])
    return tuple(  # type: ignore[return-value]
        frame.iloc[start:end].reset_index(drop=True) for start, end in itertools.pairwise(bounds)
    )
