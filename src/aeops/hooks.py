"""Kedro hooks of the project (glue only; the work is in ``aeops.serving``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from kedro.config import MissingConfigException
from kedro.framework.hooks import hook_impl


class TrackingStoreCheck:
    """Before kedro-mlflow's own set-up (``tryfirst``): stop a run at once when its
    tracking server does not answer (MLflow would retry it for minutes), and create a
    SQLite store under a lock, so runs that start together do not race on its schema.
    """

    @hook_impl(tryfirst=True)
    def after_context_created(self, context: Any) -> None:
        """Read the tracking URI from ``mlflow.yml`` (env vars resolved) and prepare it."""
        loader = context.config_loader
        loader.config_patterns.setdefault("mlflow", ["mlflow*", "mlflow*/**"])
        try:
            config = loader["mlflow"]
        except (KeyError, MissingConfigException):  # no mlflow.yml: a local store
            return
        uri = config.get("server", {}).get("mlflow_tracking_uri")
        experiment = config.get("tracking", {}).get("experiment", {})
        if not uri:
            return
        from aeops.serving import prepare_tracking_store  # mlflow: only for runs

        # With creation options set, kedro-mlflow creates the experiment itself.
        custom = any((experiment.get("create_experiment_kwargs") or {}).values())
        prepare_tracking_store(
            str(uri),
            experiment_name=None if custom else experiment.get("name"),
            project_path=Path(context.project_path),
        )


class KeepUnloggedModel:
    """When a run fails because its tracking server went away, keep the trained model
    on disk with instructions to register it later (see
    :mod:`aeops.pipelines.train.recovery`). Runs before kedro-mlflow closes the run."""

    def __init__(self) -> None:
        self._project_path = Path.cwd()

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        """Remember the project folder, where the model is kept."""
        self._project_path = Path(context.project_path)

    @hook_impl(tryfirst=True)
    def on_pipeline_error(
        self, error: Exception, run_params: dict[str, Any], pipeline: Any, catalog: Any
    ) -> None:
        """Keep the model when the tracking server is gone; never mask ``error``."""
        from aeops.pipelines.train.recovery import keep_unlogged_model

        try:
            keep_unlogged_model(catalog, self._project_path)
        except Exception:  # the run's own error is the one to report
            logging.getLogger(__name__).exception("Could not keep the trained model")
