"""The fit loop: device placement, precision, index batching and early stopping."""

from aeops.training._config import EarlyStoppingConfig, TrainingConfig
from aeops.training._device import resolve_device, resolve_precision
from aeops.training._fit import EpochRecord, FitResult, TrainingDivergedError, fit, seed_everything

__all__ = [
    "EarlyStoppingConfig",
    "EpochRecord",
    "FitResult",
    "TrainingConfig",
    "TrainingDivergedError",
    "fit",
    "resolve_device",
    "resolve_precision",
    "seed_everything",
]
