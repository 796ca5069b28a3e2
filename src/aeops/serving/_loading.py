"""Loading a registered bundle by URI, with where it came from."""

from __future__ import annotations

import json
import re
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from aeops.bundle import LoadedBundle, read_bundle

_REGISTERED = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")


class ModelNotFoundError(LookupError):
    """A model URI names no model that MLflow can load."""


class NotABundleError(ModelNotFoundError):
    """A model URI names a model, but not one that holds an aeops bundle."""


def default_model_uri(model_name: str) -> str:
    """``models:/<model_name>@champion``."""
    return f"models:/{model_name}@champion"


def _provenance(model_uri: str) -> dict[str, str]:
    """Where ``model_uri`` points now; an alias is resolved to its version number."""
    match = _REGISTERED.match(model_uri)
    if match is None:
        return {"model_uri": model_uri}
    client = MlflowClient()
    name = match["name"]
    if match["alias"]:
        version = client.get_model_version_by_alias(name, match["alias"])
    else:
        version = client.get_model_version(name, match["version"])
    return {
        "model_uri": model_uri,
        "model_name": name,
        "model_version": str(version.version),
        "run_id": str(version.run_id),
    }


def load_registered_bundle(model_uri: str) -> LoadedBundle:
    """Download (or find locally) the bundle behind ``model_uri`` and rebuild it.

    Args:
        model_uri: ``models:/name@alias``, ``models:/name/3``, ``runs:/<id>/model`` or a
            local path to a logged model.

    Raises:
        ModelNotFoundError: if the URI names nothing loadable, with MLflow's reason.
    """
    try:
        provenance = _provenance(model_uri)
        # Download the version the alias named a moment ago, not the alias again: were
        # it moved in between, the output would name one version and hold another's
        # answers.
        pinned = (
            f"models:/{provenance['model_name']}/{provenance['model_version']}"
            if "model_version" in provenance
            else model_uri
        )
        root = Path(mlflow.artifacts.download_artifacts(artifact_uri=pinned))
    except (MlflowException, OSError) as error:
        tracking, registry = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
        where = f"tracking URI {tracking}" + (
            f", registry URI {registry}" if registry != tracking else ""
        )
        raise ModelNotFoundError(
            f"model URI {model_uri!r} does not exist or cannot be read ({where}): {error}"
        ) from error
    bundle_dir = root / "artifacts" / "bundle"
    if not (bundle_dir / "bundle.json").exists():
        raise NotABundleError(f"model URI {model_uri!r} is not an aeops bundle")
    predictor, spec = read_bundle(bundle_dir)
    manifest = json.loads((bundle_dir / "bundle.json").read_text())
    provenance.update(
        latent_dim=str(predictor.model.config.latent_dim),
        threshold=repr(manifest["threshold"]["value"]),
        threshold_method=str(manifest["threshold"]["method"]),
        model_kind=predictor.model.config.kind,
    )
    return LoadedBundle(predictor=predictor, spec=spec, provenance=provenance)
