"""What the active MLflow run records: its data inputs and their digests, the model it
uses, and child runs (sweep trials)."""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import mlflow.data.pandas_dataset
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.types.schema import ColSpec, Schema
from mlflow.types.utils import _infer_schema

from aeops.serving._locks import sqlite_path, store_lock
from aeops.serving._registry import frame_digest

logger = logging.getLogger(__name__)


def log_dataset_input(
    frame: pd.DataFrame,
    name: str,
    context: str,
    label_column: str | None = None,
) -> str:
    """Record ``frame`` as an input of the active run (``mlflow.log_input``).

    The dataset carries the frame's source (``frame.attrs['source']``, the file it was
    read from), its schema and a content digest, so the MLflow UI shows which data
    every run saw and whether two runs saw the same data. Also tags the run with
    ``<context>_data_digest``.

    Returns:
        The digest (:func:`frame_digest`).

    Raises:
        RuntimeError: if no MLflow run is active.
    """
    if mlflow.active_run() is None:
        raise RuntimeError("log_dataset_input needs an active MLflow run")
    digest = frame_digest(frame)
    targets = label_column if label_column in frame.columns else None
    with warnings.catch_warnings():  # MLflow warns while guessing the kind of source
        warnings.simplefilter("ignore")
        dataset = mlflow.data.pandas_dataset.from_pandas(
            frame,
            source=str(frame.attrs.get("source", name)),
            name=name,
            targets=targets,
            digest=digest,
        )
        # A cached property: MLflow's own inference reads every cell in Python (25 s for
        # a million rows of 50 columns), and finds none for array cells of uint8 pixels.
        dataset.schema = _schema_of_widened_cells(frame)
        _log_input_tolerating_races(dataset, context)
    mlflow.set_tag(f"{context}_data_digest", digest)
    return digest


def _schema_of_widened_cells(frame: pd.DataFrame, rows: int = 100) -> Any:
    """MLflow's schema of ``frame``'s first ``rows`` (a column's type is its dtype's,
    or its cells' for objects; whether it is required, the whole column's), with array
    cells of a dtype MLflow has no type for widened to one it has (uint8 and int16 to
    int32, uint32 to int64, float16 to float32); None when that does not help either."""

    def widened(cell: Any) -> Any:
        if not isinstance(cell, np.ndarray):
            return cell
        if cell.dtype.kind in "iu":
            return cell.astype(np.result_type(cell.dtype, np.int32))
        return cell.astype(np.float32) if cell.dtype == np.float16 else cell

    head = frame.head(rows)
    head = head.assign(**{c: head[c].map(widened) for c in head.columns if head[c].dtype == object})
    try:
        schema = _infer_schema(head)  # what PandasDataset.schema itself calls
    except MlflowException:
        return None
    # Whether a column may be missing is the whole column's to say, not its first rows'.
    return Schema(
        [
            ColSpec(spec.type, spec.name, required=bool(frame[spec.name].notna().all()))
            if isinstance(spec, ColSpec) and spec.name in frame.columns
            else spec
            for spec in schema.inputs
        ]
    )


def _log_input_tolerating_races(dataset: Any, context: str, attempts: int = 3) -> None:
    """``mlflow.log_input``, safe when runs start at the same moment.

    MLflow's stores look a dataset up and insert it if absent in one transaction, so
    two runs logging the same (name, digest) at once can both miss it and one insert
    fails on the unique key. On a SQLite store the section is serialised with the
    store's lock; behind a server (any backend) the losing run retries, and its retry
    finds the dataset the other run wrote.
    """
    for attempt in range(1, attempts + 1):
        try:
            with store_lock(mlflow.get_tracking_uri()):
                mlflow.log_input(dataset, context=context)
            return
        except MlflowException as error:
            if attempt == attempts or not _is_unique_key_race(error):
                raise


def _is_unique_key_race(error: MlflowException) -> bool:
    message = str(error)
    return any(
        marker in message
        for marker in ("UNIQUE constraint failed", "duplicate key value", "Duplicate entry")
    )


def tag_evaluated_model(provenance: dict[str, str], role: str = "evaluated") -> None:
    """Tag the active run with the model it uses (URI, name, version, run), as
    ``<role>_<key>``: ``evaluated_model_version``, ``generated_by_model_uri``, ..."""
    if mlflow.active_run() is None:
        raise RuntimeError("tag_evaluated_model needs an active MLflow run")
    mlflow.set_tags({f"{role}_{key}": value for key, value in provenance.items()})


class TrackingServerUnreachableError(RuntimeError):
    """The MLflow tracking server does not answer."""


def require_tracking_server(tracking_uri: str, timeout: float = 5.0) -> None:
    """Fail fast, before any work, when an HTTP tracking server does not answer.

    MLflow's client retries a dead server for minutes with backoff, and only after the
    work it was meant to record; ``GET <uri>/health`` answers in milliseconds. Local
    stores (``sqlite:``, ``file:``, paths) need no server and pass.

    Raises:
        TrackingServerUnreachableError: naming the URI and the reason.
    """
    if not tracking_uri.startswith(("http://", "https://")):
        return
    url = tracking_uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            if response.status == 200:
                return
            reason = f"HTTP {response.status}"
    except urllib.error.HTTPError as error:
        reason = f"HTTP {error.code}"
    except (urllib.error.URLError, OSError) as error:
        reason = str(getattr(error, "reason", error))
    raise TrackingServerUnreachableError(
        f"the MLflow tracking server {tracking_uri} is unreachable ({url}: {reason}); "
        "start it, or point MLFLOW_TRACKING_URI (or server.mlflow_tracking_uri in "
        "conf/base/mlflow.yml) at a running one. Nothing was run."
    )


def prepare_tracking_store(
    tracking_uri: str, experiment_name: str | None = None, project_path: Path | None = None
) -> None:
    """Make the tracking store ready before a run starts.

    An HTTP server must answer (:func:`require_tracking_server`). A SQLite store is
    created (or migrated) under an exclusive file lock: MLflow creates the schema on
    first use, and two runs that start together on a fresh ``mlflow.db`` otherwise race
    on it and one fails with an Alembic migration error. ``experiment_name`` is created
    when missing, tolerating a concurrent run that creates it first, for the same
    reason. A relative SQLite path is taken from ``project_path`` (the working
    directory by default), as kedro-mlflow does.

    Raises:
        TrackingServerUnreachableError: if an HTTP tracking server does not answer.
    """
    from mlflow.tracking import MlflowClient

    if tracking_uri.startswith(("http://", "https://")):
        require_tracking_server(tracking_uri)
    database = sqlite_path(tracking_uri, project_path)
    if database is not None:
        tracking_uri = f"sqlite:///{database}"
    elif not tracking_uri.startswith(("http://", "https://")):
        return
    with store_lock(tracking_uri):
        client = MlflowClient(tracking_uri=tracking_uri)
        if experiment_name is None or client.get_experiment_by_name(experiment_name):
            client.search_experiments(max_results=1)  # creates a fresh SQLite schema
            return
        try:
            client.create_experiment(experiment_name)
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise


@contextmanager
def nested_run(
    name: str, params: dict[str, Any], tags: dict[str, str] | None = None
) -> Iterator[Callable[[dict[str, float]], None]]:
    """A child run of the active run (a sweep trial), with ``params`` logged.

    Yields a function that logs metrics to the child. The child ends FAILED when the
    block raises, KILLED when Ctrl-C stops it (MLflow's own context manager says
    FAILED), and the parent is active again afterwards.
    """
    if mlflow.active_run() is None:
        raise RuntimeError("nested_run needs an active MLflow run to nest under")
    mlflow.start_run(run_name=name, nested=True)
    status = "FAILED"
    try:
        mlflow.log_params({key: str(value) for key, value in params.items()})
        mlflow.set_tags(tags or {})

        def log(metrics: dict[str, float]) -> None:
            mlflow.log_metrics(metrics)

        yield log
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        mlflow.end_run(status=status)


def log_resolved_settings(blocks: dict[str, dict[str, Any]], prefix: str = "") -> None:
    """Log every setting of ``blocks`` (``{"model": {...}}``) that the active run lacks,
    flattened as kedro-mlflow flattens parameters: ``model.sparsity.weight``, after
    ``prefix`` (a sweep's winner: ``sweep.best.model.kind``).

    kedro-mlflow logs the keys that the parameter files and ``--params`` hold. A key
    left at its default (``model.beta``), or dropped by an environment whose block
    replaces the base one, would otherwise be missing, and runs would not compare
    column by column. Keys already logged keep their value (MLflow parameters are
    immutable). Outside a run (a node called directly) nothing is logged.

    A tracking store that does not answer gets a warning, not an error: the model is
    about to train, and a run whose server went away keeps it to register later.
    """
    run = mlflow.active_run()
    if run is None:
        return
    try:
        logged = mlflow.MlflowClient().get_run(run.info.run_id).data.params
    except MlflowException as error:
        logger.warning("Could not read the run's parameters to add the defaults: %s", error)
        return
    flat: dict[str, str] = {}

    def flatten(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                flatten(f"{prefix}.{key}", inner)
        elif prefix not in logged:
            flat[prefix] = str(value)

    for name, block in blocks.items():
        flatten(f"{prefix}{name}", block)
    if flat:
        try:
            mlflow.log_params(flat)
        except MlflowException as error:
            logger.warning("Could not log the settings left at their defaults: %s", error)
