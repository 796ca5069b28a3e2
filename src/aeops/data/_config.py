"""Typed configuration of the input data: the ``data`` parameter block."""

from __future__ import annotations

import difflib
import logging
import math
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

logger = logging.getLogger(__name__)


class ScalingConfig(BaseModel):
    """The ``scaling`` block.

    ``robust`` (median and interquartile range) is the default because training data
    for anomaly detection is contaminated: a few extreme rows should not set the scale.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Literal["standard", "minmax", "robust", "none"] = "robust"


class SplitConfig(BaseModel):
    """Fractions held out for validation and test; the rest trains."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    validation: float = Field(default=0.2, gt=0.0, lt=1.0)
    test: float = Field(default=0.3, gt=0.0, lt=1.0)
    stratify: bool = True
    seed: int = Field(default=0, ge=0, lt=2**32)  # numpy, torch and Optuna take these

    @model_validator(mode="after")
    def _leaves_training_rows(self) -> SplitConfig:
        if self.validation + self.test >= 1.0:
            raise ValueError(
                f"data.split.validation + data.split.test must be < 1, got "
                f"{self.validation} + {self.test}"
            )
        return self


class WindowConfig(BaseModel):
    """Sliding windows over a time series (``data.kind: timeseries``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    length: int = Field(default=32, ge=2)
    stride: int = Field(default=4, ge=1)
    # A step's score: the trailing mean over this many steps' scores (1: none).
    score_smoothing: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _stride_covers(self) -> WindowConfig:
        if self.stride > self.length:
            raise ValueError(
                f"data.window.stride={self.stride} is longer than data.window.length="
                f"{self.length}; some time steps would belong to no window"
            )
        return self


class DataConfig(BaseModel):
    """The ``data`` block: what the raw table holds and how to split it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["tabular", "timeseries", "image"] = "tabular"
    id_column: str = "id"
    label_column: str | None = None
    feature_columns: tuple[str, ...] | None = None
    bounds: dict[str, tuple[float | None, float | None]] = Field(default_factory=dict)
    min_rows: int = Field(default=20, ge=3)
    split: SplitConfig = SplitConfig()
    # timeseries
    timestamp_column: str = "timestamp"
    timestamp_format: str | None = None  # e.g. "%d/%m/%Y %H:%M"; None: ISO 8601 or inferred
    window: WindowConfig = WindowConfig()
    max_gap: str | None = None  # e.g. "5min"; None: 3x the median step
    # image
    image_column: str = "image"
    image_shape: tuple[int, int, int] | None = None  # (C, H, W); None: from the data
    pixel_range: tuple[float, float] | None = None  # None: no range check

    @field_validator("max_gap", mode="before")
    @classmethod
    def _a_positive_duration(cls, value: Any) -> str | None:
        if value is None:
            return None
        value = str(value)  # --params=data.max_gap=5 arrives as the number 5
        try:
            gap = pd.Timedelta(value)
        except ValueError:
            gap = None
        try:  # a bare number ("5") would be read as nanoseconds
            float(value)
            unitless = True
        except ValueError:
            unitless = False
        if gap is None or pd.isna(gap) or gap <= pd.Timedelta(0) or unitless:
            raise ValueError(
                f"{value!r} is not a positive duration with a unit, such as '5min', '30s' or '1h'"
            )
        return value

    @field_validator("feature_columns", mode="before")
    @classmethod
    def _empty_is_null(cls, value: Any) -> Any:
        # Bundles trained before this check stored [] and must still load.
        if isinstance(value, list | tuple) and not value:
            logger.warning(
                "data.feature_columns: [] is read as null (every numeric column); set "
                "null to say so, or list the columns"
            )
            return None
        return value

    @field_validator("feature_columns")
    @classmethod
    def _distinct_columns(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        repeated = sorted({name for name in value if value.count(name) > 1})
        if repeated:
            raise ValueError(f"lists {repeated} more than once")
        return value

    @field_validator("bounds")
    @classmethod
    def _ordered_finite_bounds(
        cls, value: dict[str, tuple[float | None, float | None]]
    ) -> dict[str, tuple[float | None, float | None]]:
        for column, (low, high) in value.items():
            if any(end is not None and not math.isfinite(end) for end in (low, high)):
                raise ValueError(f"{column!r}: [{low}, {high}] must be finite numbers or null")
            if low is not None and high is not None and low > high:
                raise ValueError(f"{column!r}: [{low}, {high}] is inverted (min above max)")
        return value

    @field_validator("pixel_range")
    @classmethod
    def _low_below_high(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and not value[0] < value[1]:
            raise ValueError(f"{list(value)} must be [low, high] with low below high")
        return value

    @model_validator(mode="after")
    def _distinct_roles(self) -> DataConfig:
        if self.label_column is not None and self.label_column == self.id_column:
            raise ValueError(
                f"data.label_column and data.id_column are both {self.id_column!r}; "
                "they must name different columns"
            )
        # With the features listed, bounds for another column are known to be wrong
        # before any data is read (otherwise validation names them).
        features = list(self.feature_columns or ())
        unknown = sorted(set(self.bounds) - set(features)) if features else []
        if unknown:
            close = difflib.get_close_matches(unknown[0], features, n=1)
            raise ValueError(
                f"data.bounds names {unknown[0]!r}, which is not a feature column"
                + (f" (did you mean {close[0]!r}?)" if close else "")
                + f"; the features are {features}"
            )
        for role, name in (("id_column", self.id_column), ("label_column", self.label_column)):
            if name is not None and self.feature_columns and name in self.feature_columns:
                raise ValueError(
                    f"data.{role}={name!r} is also listed in data.feature_columns; "
                    "ids and labels are never model inputs"
                )
        return self
