"""Keeping a trained model when the tracking server goes away mid-run.

Training may take hours; a tracking server that stops answering afterwards must not
throw the result away. When a ``train`` run fails and its HTTP tracking server does
not answer, the model, threshold, metrics and everything registration needs are
written to ``data/06_models/unlogged/<stamp>-<model name>/``, with a message saying
how to log and register them once the server is back.
"""

from __future__ import annotations

import atexit
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow

from aeops.pipelines.train.nodes import (
    choose_anomaly_threshold,
    registration_request,
)
from aeops.scoring import Predictor
from aeops.scoring.evaluation import evaluate_frame
from aeops.serving import (
    REQUESTS_NOT_RETRIED,
    TrackingServerUnreachableError,
    require_tracking_server,
)
from aeops.serving.pending import UNLOGGED

logger = logging.getLogger(__name__)


def _tracking_server_is_gone() -> bool:
    uri = mlflow.get_tracking_uri()
    if not uri.startswith(("http://", "https://")):
        return False
    try:
        require_tracking_server(uri, timeout=3.0)
    except TrackingServerUnreachableError:
        return True
    return False


def keep_unlogged_model(catalog: Any, project_path: Path) -> Path | None:
    """Write the run's trained model for later registration, if the server is gone.

    Returns:
        The folder written, or None when there is nothing to keep (no model trained
        yet) or the failure was not the tracking server's.
    """

    def value(name: str) -> Any:
        try:
            return catalog.load(name)
        except Exception:  # released, never computed, or (MLflow datasets) unreachable
            return None

    # The server first: a cheap no for local stores, and no catalog reads (logged as
    # "Loading data from ...") after every other kind of failure.
    if not _tracking_server_is_gone():
        return None
    model = value("trained_model")
    if model is None:
        return None
    # MLflow retries each request for minutes by default. The server is known gone:
    # the reads below, kedro-mlflow's end of the run and MLflow's exit handler fail at
    # once instead, for the rest of this process (a user's own settings are kept).
    for key, setting in REQUESTS_NOT_RETRIED.items():
        os.environ.setdefault(key, setting)
    inputs, scaler = value("input_spec"), value("scaler")
    data, threshold_params = value("params:data") or {}, value("params:threshold")
    threshold = value("anomaly_threshold")
    if threshold is None:
        threshold = choose_anomaly_threshold(
            model, inputs, scaler, value("validation_frame"), threshold_params, data
        )
    test_frame = value("test_frame")
    metrics = value("evaluation_metrics")
    if metrics is None:
        metrics = evaluate_frame(
            Predictor(model=model, inputs=inputs, scaler=scaler, threshold=threshold),
            test_frame,
            id_column=data.get("id_column", "id"),
            label_column=data.get("label_column"),
        ).metrics
    request = registration_request(
        model,
        inputs,
        scaler,
        threshold,
        value("validation_suite") or {},
        metrics,
        value("validated_data"),
        value("data_digest") or "",
        test_frame,
        value("params:registry"),
        data,
    )
    run = mlflow.active_run()
    request.source_run_id = None if run is None else run.info.run_id
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    # The id (the run's) keeps two runs that lose the server in one second apart.
    name = f"{stamp}-{request.config.model_name}-{request.pending_id[:8]}"
    folder = request.save(project_path / UNLOGGED / name)
    message = (
        f"The MLflow tracking server {mlflow.get_tracking_uri()} stopped answering during "
        f"the run. The trained model was kept at {folder.relative_to(project_path)} "
        "(bundle, threshold, metrics). Once the server is back, log and register every "
        "kept model, from the project folder, with:\n    python -m aeops.serving.pending"
    )
    logger.error(message)
    if not _KEPT:
        atexit.register(_remind_of_kept_models)
    _KEPT.append((folder, message))
    return folder


# Models kept in this process, and what was said about them.
_KEPT: list[tuple[Path, str]] = []


def _remind_of_kept_models() -> None:
    """At exit, say again how to register the kept models still on disk: the errors of
    the requests that end the run against the gone server would bury it."""
    for folder, message in _KEPT:
        if folder.exists():
            logger.error(message)
