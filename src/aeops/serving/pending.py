"""A registration kept on disk when the tracking server went away mid-run, and the
command that logs and registers it once the server is back::

    python -m aeops.serving.pending                      # every kept model, oldest first
    python -m aeops.serving.pending data/06_models/unlogged/<stamp>-<model name>-<run>

Registering a folder is safe to repeat and to run twice at once: a lock serialises
the commands, and each kept model carries an id its registry version is tagged with,
so a folder registered before a crash (but not yet removed) is not registered again.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from aeops.bundle import BundleSpec, read_bundle, write_bundle
from aeops.data import nested_array
from aeops.scoring import Predictor
from aeops.serving._locks import exclusive_lock
from aeops.serving._registry import (
    REGISTRATION_COMPLETE,
    Registration,
    RegistryConfig,
    compare_on_unseen_rows,
    register_bundle,
)
from aeops.serving._runs import TrackingServerUnreachableError, prepare_tracking_store

logger = logging.getLogger(__name__)

_REQUEST = "registration.json"
_EXAMPLE = "input_example.parquet"
_BUNDLE = "bundle"
_TRAINING_ROWS = "training_rows.npy"
_EVALUATION = "evaluation.parquet"
# Where the train pipeline keeps models (relative to the project), and the tag that
# ties a registry version to the kept model it came from.
UNLOGGED = Path("data/06_models/unlogged")
PENDING_ID_TAG = "pending_registration_id"


@dataclass
class PendingRegistration:
    """Everything :func:`register_bundle` needs, so it can run now or later.

    ``evaluation_frame`` is the test split the metrics were taken on (with labels in
    ``label_column``): a champion evaluated on other data is scored on its rows.
    """

    predictor: Predictor
    spec: BundleSpec
    input_example: pd.DataFrame
    metrics: dict[str, float]
    config: RegistryConfig
    tags: dict[str, str]
    optional_columns: set[str] = field(default_factory=set)
    evaluation_digest: str | None = None
    training_rows: np.ndarray | None = field(default=None, repr=False, compare=False)
    evaluation_frame: pd.DataFrame | None = field(default=None, repr=False, compare=False)
    label_column: str | None = None
    # The train run that could not finish logging, closed as FAILED once registered.
    source_run_id: str | None = None
    pending_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def save(self, folder: Path) -> Path:
        """Write the bundle, input example and request into ``folder`` atomically."""
        folder.parent.mkdir(parents=True, exist_ok=True)
        # Not mkdtemp: its folders are private to their owner, and this one stays.
        staging = folder.with_name(f".{folder.name}.{uuid.uuid4().hex}")
        staging.mkdir()
        try:
            write_bundle(staging / _BUNDLE, self.predictor, self.spec)
            self.input_example.to_parquet(staging / _EXAMPLE)
            request = {
                "metrics": self.metrics,
                "registry": self.config.model_dump(),
                "tags": self.tags,
                "optional_columns": sorted(self.optional_columns),
                "evaluation_digest": self.evaluation_digest,
                "label_column": self.label_column,
                "source_run_id": self.source_run_id,
                "pending_id": self.pending_id,
            }
            if self.training_rows is not None:
                np.save(staging / _TRAINING_ROWS, self.training_rows, allow_pickle=False)
            if self.evaluation_frame is not None:
                try:
                    request["array_columns"] = _write_frame(
                        self.evaluation_frame, staging / _EVALUATION
                    )
                except Exception as error:  # the model matters more than its comparison
                    (staging / _EVALUATION).unlink(missing_ok=True)
                    logger.warning(
                        "The test split could not be kept (%s); a champion will be "
                        "compared on its logged metrics",
                        error,
                    )
            (staging / _REQUEST).write_text(json.dumps(request, indent=2))
            staging.replace(folder)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return folder

    @classmethod
    def load(cls, folder: Path) -> PendingRegistration:
        """Read a folder written by :meth:`save`.

        Raises:
            FileNotFoundError: if ``folder`` holds no pending registration.
        """
        if not (folder / _REQUEST).exists():
            raise FileNotFoundError(f"{folder} holds no pending registration ({_REQUEST})")
        request = json.loads((folder / _REQUEST).read_text())
        predictor, spec = read_bundle(folder / _BUNDLE)
        rows, evaluation = folder / _TRAINING_ROWS, folder / _EVALUATION
        return cls(
            predictor=predictor,
            spec=spec,
            input_example=pd.read_parquet(folder / _EXAMPLE),
            metrics={k: float(v) for k, v in request["metrics"].items()},
            config=RegistryConfig.model_validate(request["registry"]),
            tags=dict(request["tags"]),
            optional_columns=set(request["optional_columns"]),
            evaluation_digest=request["evaluation_digest"],
            training_rows=np.load(rows, allow_pickle=False) if rows.exists() else None,
            evaluation_frame=(
                _read_frame(evaluation, request.get("array_columns", []))
                if evaluation.exists()
                else None
            ),
            label_column=request.get("label_column"),
            source_run_id=request.get("source_run_id"),
            # A folder kept before ids were written gets one now (no earlier version has it).
            pending_id=request.get("pending_id") or uuid.uuid4().hex,
        )

    def register(self) -> Registration:
        """Log the bundle in the active run and register it (see :func:`register_bundle`).

        A champion evaluated on other data is scored here on the rows of
        ``evaluation_frame`` that neither model was trained on; without that frame its
        logged metric is all there is to compare with.
        """
        compare = (
            None
            if self.evaluation_frame is None
            else compare_on_unseen_rows(
                self.predictor,
                self.spec,
                self.evaluation_frame,
                self.label_column,
                self.training_rows,
            )
        )
        return register_bundle(
            self.predictor,
            self.spec,
            self.input_example,
            self.metrics,
            self.config,
            {**self.tags, PENDING_ID_TAG: self.pending_id},
            optional_columns=self.optional_columns,
            evaluation_digest=self.evaluation_digest,
            compare=compare,
            training_rows=self.training_rows,
        )


def _write_frame(frame: pd.DataFrame, path: Path) -> list[str]:
    """Write ``frame`` as Parquet; columns of arrays (images) go as nested lists, and
    their names are returned so :func:`_read_frame` can stack them back."""
    arrays = [
        str(name)
        for name in frame.columns
        if frame[name].dtype == object
        and any(isinstance(cell, np.ndarray | list) for cell in frame[name])
    ]
    nested = {
        name: pd.Series(
            [None if cell is None else np.asarray(cell).tolist() for cell in frame[name]],
            index=frame.index,
            dtype=object,
        )
        for name in arrays
    }
    frame.assign(**nested).to_parquet(path)
    return arrays


def _read_frame(path: Path, array_columns: list[str]) -> pd.DataFrame:
    frame = pd.read_parquet(path)
    for name in array_columns:
        cells = [None if cell is None else nested_array(cell) for cell in frame[name]]
        frame[name] = pd.Series(cells, index=frame.index, dtype=object)
    return frame


class NothingPendingError(FileNotFoundError):
    """The folder holds no kept model (any more)."""


class PendingRegistrationBusyError(RuntimeError):
    """A version of the kept model is being registered, perhaps by another command."""


# Seconds after which an unfinished version counts as left behind, not in progress.
_IN_PROGRESS = 600.0


def log_pending(folder: Path, experiment: str = "aeops") -> Registration | None:
    """Log and register a kept registration in a new run of ``experiment``; the folder
    is removed once the model is registered.

    Returns:
        The registration; None when a version tagged with this folder's id is already
        in the registry (an earlier command registered it and stopped before removing
        the folder, which is removed now).

    Raises:
        NothingPendingError: if the folder holds no kept model, for instance because
            another command registered it meanwhile.
    """
    folder = folder.resolve()
    with exclusive_lock(folder.parent / ".pending.lock"):
        if not (folder / _REQUEST).is_file():
            raise NothingPendingError(
                f"{folder} holds no pending registration (no {_REQUEST} in it); another "
                "`python -m aeops.serving.pending` may have registered it"
            )
        request = json.loads((folder / _REQUEST).read_text())
        model_name = RegistryConfig.model_validate(request["registry"]).model_name
        # Not mlflow.set_experiment: that would change the caller's active experiment.
        prepare_tracking_store(mlflow.get_tracking_uri(), experiment)
        client = MlflowClient()
        done = _registered(client, model_name, request.get("pending_id"))
        if done is not None:
            logger.info(
                "%s is already registered as %s version %s; removing the folder",
                folder,
                model_name,
                done,
            )
            _close_source_run(client, request.get("source_run_id"))
            _remove(folder)
            return None
        pending = PendingRegistration.load(folder)
        found = client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else client.create_experiment(experiment)
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"register {folder.name}"):
            tags = {**pending.tags, "registered_from": str(folder)}
            if pending.source_run_id:
                tags["source_run_id"] = pending.source_run_id
            mlflow.set_tags(tags)
            if pending.metrics:
                mlflow.log_metrics(pending.metrics)
            registration = pending.register()
        _close_source_run(client, pending.source_run_id)
        _remove(folder)
    return registration


def _registered(client: MlflowClient, model_name: str, pending_id: str | None) -> str | None:
    """The version of ``model_name`` registered from the kept model ``pending_id``, if
    one was registered in full; one a process left half-way (before its alias) is
    deleted, so the model is registered again.

    Raises:
        PendingRegistrationBusyError: if a half-way version is younger than
            ``_IN_PROGRESS``: another command (on another machine, which the lock
            does not reach) may be registering it.
    """
    if not pending_id:  # kept before ids were written
        return None
    tagged = client.search_model_versions(f"tags.{PENDING_ID_TAG} = '{pending_id}'")
    for version in (v for v in tagged if v.name == model_name):
        if REGISTRATION_COMPLETE in version.tags:
            return str(version.version)
        age = time.time() - version.creation_timestamp / 1000
        if age < _IN_PROGRESS:
            raise PendingRegistrationBusyError(
                f"{model_name} version {version.version} from this kept model was created "
                f"{age:.0f} s ago and is not finished: another command may be registering "
                f"it; rerun after {_IN_PROGRESS // 60:.0f} minutes to replace it if not"
            )
        logger.warning(
            "%s version %s was registered from this folder but never finished (no %s "
            "tag); deleting it and registering again",
            model_name,
            version.version,
            REGISTRATION_COMPLETE,
        )
        client.delete_model_version(model_name, version.version)
    return None


def _remove(folder: Path) -> None:
    """Remove a registered folder: first out of sight (a rename), so a removal cut
    short leaves a hidden remainder, not a kept model that no longer loads."""
    hidden = folder.with_name(f".{folder.name}.registered-{uuid.uuid4().hex[:8]}")
    folder.rename(hidden)
    shutil.rmtree(hidden)


def _close_source_run(client: MlflowClient, run_id: str | None) -> None:
    """Mark the train run that lost its server FAILED, if it is still RUNNING: its
    process could not tell the server it ended."""
    if not run_id:
        return
    try:
        if client.get_run(run_id).info.status == "RUNNING":
            client.set_terminated(run_id, "FAILED")
    except Exception as error:  # the model is registered; the old run is a detail
        logger.warning("Could not mark the train run %s FAILED: %s", run_id, error)


def pending_folders(root: Path = UNLOGGED) -> list[Path]:
    """The kept models under ``root``, oldest first (their names start with the time)."""
    if not root.is_dir():
        return []
    # Hidden folders are a save that never finished (see PendingRegistration.save).
    kept = (p for p in root.iterdir() if not p.name.startswith("."))
    return sorted(p for p in kept if (p / _REQUEST).is_file())


def main(argv: list[str] | None = None) -> None:
    """``python -m aeops.serving.pending [FOLDER ...] [--experiment NAME]``."""
    parser = argparse.ArgumentParser(
        prog="python -m aeops.serving.pending", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "folders",
        nargs="*",
        type=Path,
        help=f"folders under {UNLOGGED} (default: every one there, oldest first)",
    )
    parser.add_argument("--experiment", default="aeops", help="MLflow experiment (aeops)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    folders = args.folders or pending_folders()
    if not folders:  # a repeat, or a scheduled run with nothing kept: not a failure
        logger.info("Nothing to register: no pending registrations under %s", UNLOGGED)
        return
    for folder in folders:
        if not (folder / _REQUEST).is_file():
            parser.error(f"{folder} holds no pending registration (no {_REQUEST} in it)")
    failed = []
    for folder in folders:
        try:
            registration = log_pending(folder, args.experiment)
        except NothingPendingError as error:
            logger.info("%s", error)
            continue
        except (TrackingServerUnreachableError, PendingRegistrationBusyError) as error:
            logger.error("Could not register %s: %s", folder, error)  # says what to do
            failed.append(str(folder))
            continue
        except Exception:  # one broken folder must not keep the others unregistered
            logger.exception("Could not register %s", folder)
            failed.append(str(folder))
            continue
        if registration is not None:
            logger.info("Registered: %s", json.dumps(registration.to_dict(), indent=2))
    if failed:
        raise SystemExit(f"not registered: {', '.join(failed)} (see the errors above)")


if __name__ == "__main__":
    main()
