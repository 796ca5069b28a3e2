"""The MLflow bundle of a trained autoencoder and the registry helpers around it."""

from aeops.serving._bundle_files import BundleSpec, read_bundle, write_bundle
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
    "Registration",
    "RegistryConfig",
    "frame_digest",
    "log_bundle",
    "predict_frame",
    "read_bundle",
    "register_bundle",
    "scores_frame",
    "write_bundle",
]
