"""The fit loop: device placement, precision, index batching, checkpoints, early stopping.

Importing this package pulls in torch, numpy and pydantic only (no kedro, no mlflow),
so it runs wherever PyTorch does.
"""

from aeops.training._checkpoint import CheckpointMismatchError
from aeops.training._config import EarlyStoppingConfig, LRScheduleConfig, TrainingConfig
from aeops.training._device import resolve_device, resolve_precision
from aeops.training._fit import fit, seed_everything
from aeops.training._records import EpochRecord, FitResult, TrainingDivergedError

__all__ = [
    "CheckpointMismatchError",
    "EarlyStoppingConfig",
    "EpochRecord",
    "FitResult",
    "LRScheduleConfig",
    "TrainingConfig",
    "TrainingDivergedError",
    "fit",
    "resolve_device",
    "resolve_precision",
    "seed_everything",
]
