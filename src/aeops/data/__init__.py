"""Raw data to model input: ingestion, splitting and scaling."""

from aeops.data._config import DataConfig, ScalingConfig, SplitConfig
from aeops.data._ingestion import DataIngestionError, ingest, resolve_feature_columns
from aeops.data._scaling import SCALING_METHODS, FittedScaler, fit_scaler
from aeops.data._split import split_frame

__all__ = [
    "SCALING_METHODS",
    "DataConfig",
    "DataIngestionError",
    "FittedScaler",
    "ScalingConfig",
    "SplitConfig",
    "fit_scaler",
    "ingest",
    "resolve_feature_columns",
    "split_frame",
]
