"""Kedro hooks of the project (glue only; the work is in ``aeops.serving``)."""

from __future__ import annotations

import atexit
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
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


class CloseInterruptedRun:
    """A run stopped by Ctrl-C or SIGTERM is recorded as ``KILLED``.

    Kedro calls ``on_pipeline_error`` for exceptions only. On Ctrl-C, MLflow's own exit
    handler then closed the run as ``FINISHED``; on SIGTERM (a scheduler, ``docker
    stop``), nothing closed it and it stayed ``RUNNING``. Here SIGTERM exits through
    Python (status 143) while a pipeline runs, and an exit handler, registered after
    MLflow's and so run before it, ends a run left open by an unfinished pipeline.
    """

    def __init__(self) -> None:
        self._running = False
        self._exit_handler_set = False
        self._previous_sigterm: Any = None

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        """Watch for an interruption until the pipeline ends."""
        self._running = True
        if not self._exit_handler_set:
            atexit.register(self._close_interrupted_run)
            self._exit_handler_set = True
        in_main_thread = threading.current_thread() is threading.main_thread()
        if in_main_thread and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            self._previous_sigterm = signal.signal(signal.SIGTERM, _exit_on_sigterm)

    @hook_impl
    def after_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        """The pipeline ended: kedro-mlflow closes its run."""
        self._stop_watching()

    @hook_impl
    def on_pipeline_error(
        self, error: Exception, run_params: dict[str, Any], pipeline: Any, catalog: Any
    ) -> None:
        """The pipeline failed: kedro-mlflow closes its run as ``FAILED``."""
        self._stop_watching()

    def _stop_watching(self) -> None:
        self._running = False
        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None

    def _close_interrupted_run(self) -> None:
        mlflow = sys.modules.get("mlflow")
        if not self._running or mlflow is None:
            return
        try:
            # kedro-mlflow's run can be on MLflow's stack more than once, and MLflow's
            # exit handler would end what is left as FINISHED.
            for _ in range(8):
                if mlflow.active_run() is None:
                    break
                mlflow.end_run(status="KILLED")
        except Exception as error:  # at exit: say so, never raise
            logging.getLogger(__name__).warning("Could not mark the run KILLED: %s", error)


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)
