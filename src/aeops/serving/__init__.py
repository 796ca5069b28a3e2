"""The MLflow bundle of a trained autoencoder and the registry helpers around it."""

from aeops.serving._bundle_files import BundleSpec, read_bundle, write_bundle
from aeops.serving._loading import (
    LoadedBundle,
    ModelNotFoundError,
    default_model_uri,
    load_registered_bundle,
    provenance_metadata,
)
from aeops.serving._pyfunc import OUTPUTS, AutoencoderBundle, predict_frame, scores_frame
from aeops.serving._registry import (
    CHALLENGER,
    CHAMPION,
    Registration,
    RegistryConfig,
    frame_digest,
    log_bundle,
    register_bundle,
)

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "OUTPUTS",
    "AutoencoderBundle",
    "BundleSpec",
    "LoadedBundle",
    "ModelNotFoundError",
    "Registration",
    "RegistryConfig",
    "default_model_uri",
    "frame_digest",
    "load_registered_bundle",
    "log_bundle",
    "predict_frame",
    "provenance_metadata",
    "read_bundle",
    "register_bundle",
    "scores_frame",
    "write_bundle",
]
