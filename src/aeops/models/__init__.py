"""Autoencoder models: one contract, registries of objectives and networks.

Importing this package registers every built-in ``model.kind`` and
``model.architecture``.
"""

from aeops.models import networks, objectives
from aeops.models._config import (
    DEFAULT_ARCHITECTURE,
    ModelConfig,
    NoiseConfig,
    SparsityConfig,
    resolve_architecture,
)
from aeops.models._contract import Autoencoder, LossOutput
from aeops.models._registry import (
    MODEL_REGISTRY,
    NETWORK_REGISTRY,
    ModelConfigError,
    build_model,
    register_model,
    register_network,
)

__all__ = [
    "DEFAULT_ARCHITECTURE",
    "MODEL_REGISTRY",
    "NETWORK_REGISTRY",
    "Autoencoder",
    "LossOutput",
    "ModelConfig",
    "ModelConfigError",
    "NoiseConfig",
    "SparsityConfig",
    "build_model",
    "networks",
    "objectives",
    "register_model",
    "register_network",
    "resolve_architecture",
]
