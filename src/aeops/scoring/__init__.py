"""Reconstruction errors, thresholds and metrics (figures live in ``aeops.scoring.plots``)."""

from aeops.data import InputSchemaError
from aeops.scoring._metrics import LABEL_FREE_METRICS, SPLIT_METRICS, detection_metrics
from aeops.scoring._predictor import Predictor, Scores
from aeops.scoring._threshold import (
    Threshold,
    ThresholdConfig,
    ThresholdError,
    choose_threshold,
    peaks_over_threshold,
)

__all__ = [
    "LABEL_FREE_METRICS",
    "SPLIT_METRICS",
    "InputSchemaError",
    "Predictor",
    "Scores",
    "Threshold",
    "ThresholdConfig",
    "ThresholdError",
    "choose_threshold",
    "detection_metrics",
    "peaks_over_threshold",
]
