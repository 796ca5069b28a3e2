"""Loading a registered bundle by URI, with where it came from."""

from __future__ import annotations

import json
import logging
import re
import tempfile
from pathlib import Path
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from aeops.bundle import BundleFormatError, LoadedBundle, pinned_model_uri, read_bundle

logger = logging.getLogger(__name__)

_REGISTERED = re.compile(
    r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+|latest))$"
)


class ModelNotFoundError(LookupError):
    """A model URI names no model that MLflow can load."""


class NotABundleError(ModelNotFoundError):
    """A model URI names a model, but not one that holds an aeops bundle."""


# The last tag a registration writes, after the alias: a version without it was left
# half-way by a process that died (see aeops.serving._registry).
REGISTRATION_COMPLETE = "registration_complete"


def default_model_uri(model_name: str) -> str:
    """``models:/<model_name>@champion``."""
    return f"models:/{model_name}@champion"


_RUN = re.compile(r"^runs:/(?P<run_id>[^/]+)/")
_LOGGED = re.compile(r"^models:/(?P<model_id>m-[0-9a-f]+)$")


def _provenance(model_uri: str) -> dict[str, str]:
    """Where ``model_uri`` points now; an alias is resolved to its version number. A
    run's or a logged model's URI gets its run, and its registered version when the
    run registered exactly one."""
    match = _REGISTERED.match(model_uri)
    client = MlflowClient()
    if match is None:
        provenance = {"model_uri": model_uri}
        if run := _RUN.match(model_uri):
            provenance["run_id"] = run["run_id"]
        elif logged := _LOGGED.match(model_uri):
            source = mlflow.get_logged_model(logged["model_id"]).source_run_id
            if source:
                provenance["run_id"] = source
        if "run_id" in provenance:
            versions: list[Any] = []
            try:
                versions = list(client.search_model_versions(f"run_id='{provenance['run_id']}'"))
            except MlflowException as error:  # the version only names it; the model loads
                logger.warning("Could not look up the version of %s: %s", model_uri, error)
            if len(versions) == 1:
                provenance["model_name"] = versions[0].name
                provenance["model_version"] = str(versions[0].version)
        return provenance
    name = match["name"]
    if match["alias"]:
        version = client.get_model_version_by_alias(name, match["alias"])
    elif match["version"] == "latest":  # as MLflow reads it: the highest version number
        versions = client.search_model_versions(f"name='{name}'")
        if not versions:
            raise MlflowException(f"registered model {name!r} has no versions")
        # Of those whose registration finished: a version a killed run left half-made
        # (no alias, to be deleted by `python -m aeops.serving.pending`) is not one to
        # use. Versions from before that tag existed count when none has it.
        finished = [v for v in versions if v.tags.get(REGISTRATION_COMPLETE) == "true"]
        version = max(finished or versions, key=lambda candidate: int(candidate.version))
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
        model_uri: ``models:/name@alias``, ``models:/name/3``, ``models:/name/latest``,
            ``runs:/<id>/model``,
            a logged model's ``models:/m-<id>``, or a local path to a logged model.

    Raises:
        ModelNotFoundError: if the URI names nothing loadable, with MLflow's reason.
        BundleFormatError: if another aeops release wrote the bundle.
    """
    # Everything is read into memory before the download goes: MLflow's own temporary
    # folder was left behind by every job (a scheduled one would fill /tmp).
    with tempfile.TemporaryDirectory(prefix="aeops-model-") as scratch:
        try:
            provenance = _provenance(model_uri)
            # Download the version the alias named a moment ago, not the alias again: were
            # it moved in between, the output would name one version and hold another's
            # answers.
            pinned = pinned_model_uri(provenance) if _REGISTERED.match(model_uri) else model_uri
            root = Path(mlflow.artifacts.download_artifacts(artifact_uri=pinned, dst_path=scratch))
        except (MlflowException, OSError) as error:
            tracking, registry = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
            where = f"tracking URI {tracking}" + (
                f", registry URI {registry}" if registry != tracking else ""
            )
            raise ModelNotFoundError(
                f"model URI {model_uri!r} does not exist or cannot be read ({where}): {error}"
            ) from error
        if not (root / "MLmodel").exists():
            # Into a folder of its own, MLflow copies whatever is there without a word,
            # even nothing: the model's files are gone (after `mlflow gc`, say).
            raise ModelNotFoundError(
                f"model URI {model_uri!r} names a model whose files are gone (no MLmodel "
                "at its artifact location)"
            )
        bundle_dir = root / "artifacts" / "bundle"
        if not (bundle_dir / "bundle.json").exists():
            raise NotABundleError(f"model URI {model_uri!r} is not an aeops bundle")
        try:
            predictor, spec = read_bundle(bundle_dir)
        except BundleFormatError as error:  # name the model, not MLflow's download folder
            raise BundleFormatError(
                f"model URI {model_uri!r}: {str(error).replace(str(bundle_dir), 'the bundle')}"
            ) from None
        manifest = json.loads((bundle_dir / "bundle.json").read_text())
        provenance.update(
            latent_dim=str(predictor.model.config.latent_dim),
            threshold=repr(manifest["threshold"]["value"]),
            threshold_method=str(manifest["threshold"]["method"]),
            model_kind=predictor.model.config.kind,
        )
    return LoadedBundle(predictor=predictor, spec=spec, provenance=provenance)
