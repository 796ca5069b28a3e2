"""The MLflow bundle of a trained autoencoder and the registry helpers around it."""

from aeops.bundle import BundleSpec, LoadedBundle, provenance_metadata, read_bundle, write_bundle
from aeops.serving._loading import (
    ModelNotFoundError,
    default_model_uri,
    load_registered_bundle,
)
from aeops.serving._pyfunc import OUTPUTS, AutoencoderBundle, predict_frame, scores_frame
from aeops.serving._registry import (
    CHALLENGER,
    CHAMPION,
    REQUESTS_NOT_RETRIED,
    ChampionComparison,
    Registration,
    RegistryConfig,
    frame_digest,
    log_bundle,
    register_bundle,
)
from aeops.serving._runs import (
    TrackingServerUnreachableError,
    log_dataset_input,
    log_resolved_settings,
    nested_run,
    prepare_tracking_store,
    require_tracking_server,
    tag_evaluated_model,
)

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "OUTPUTS",
    "REQUESTS_NOT_RETRIED",
    "AutoencoderBundle",
    "BundleSpec",
    "ChampionComparison",
    "LoadedBundle",
    "ModelNotFoundError",
    "Registration",
    "RegistryConfig",
    "TrackingServerUnreachableError",
    "default_model_uri",
    "frame_digest",
    "load_registered_bundle",
    "log_bundle",
    "log_dataset_input",
    "log_resolved_settings",
    "nested_run",
    "predict_frame",
    "prepare_tracking_store",
    "provenance_metadata",
    "read_bundle",
    "register_bundle",
    "require_tracking_server",
    "scores_frame",
    "tag_evaluated_model",
    "write_bundle",
]
