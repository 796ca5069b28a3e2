"""Raw data to model input: ingestion, input specs per data kind, splitting, scaling."""

from aeops.data._config import DataConfig, ScalingConfig, SplitConfig, WindowConfig
from aeops.data._ingestion import (
    MISSING_TEXT,
    DataIngestionError,
    another_delimiter_problem,
    decimals_as_floats,
    ingest,
    parse_timestamps,
    repeated_names_problem,
    resolve_feature_columns,
)
from aeops.data._inputs import (
    ImageInputs,
    InputSchemaError,
    InputSpec,
    TabularInputs,
    WindowInputs,
    input_spec_from_dict,
    nearest_window,
    nested_array,
    trailing_mean,
    window_starts,
)
from aeops.data._kinds import (
    fit_input_scaler,
    image_values,
    infer_image_shape,
    make_input_spec,
    split_by_kind,
)
from aeops.data._scaling import SCALING_METHODS, FittedScaler, fit_scaler
from aeops.data._split import split_frame

__all__ = [
    "MISSING_TEXT",
    "SCALING_METHODS",
    "DataConfig",
    "DataIngestionError",
    "FittedScaler",
    "ImageInputs",
    "InputSchemaError",
    "InputSpec",
    "ScalingConfig",
    "SplitConfig",
    "TabularInputs",
    "WindowConfig",
    "WindowInputs",
    "another_delimiter_problem",
    "decimals_as_floats",
    "fit_input_scaler",
    "fit_scaler",
    "image_values",
    "infer_image_shape",
    "ingest",
    "input_spec_from_dict",
    "make_input_spec",
    "nearest_window",
    "nested_array",
    "parse_timestamps",
    "repeated_names_problem",
    "resolve_feature_columns",
    "split_by_kind",
    "split_frame",
    "trailing_mean",
    "window_starts",
]
