"""Kedro project settings."""

import os
import sys
import warnings
from typing import TextIO

from omegaconf.resolvers import oc

from aeops._config_loader import ParamsAfterEnvLoader
from aeops.hooks import (
    BriefRefusals,
    CheckParametersFirst,
    CloseInterruptedRun,
    DescribeRun,
    KeepUnloggedModel,
    RefuseUnknownParameters,
    TrackingStoreCheck,
)

# `--params` apply to the merged parameters, not to base's and the environment's apart
# (where a runtime value gave the environment a block that replaced base's whole block).
CONFIG_LOADER_CLASS = ParamsAfterEnvLoader

# `${oc.env:MLFLOW_TRACKING_URI,sqlite:///mlflow.db}` in mlflow.yml lets an environment
# variable point runs at an `mlflow server`; Kedro only enables oc.env for credentials.
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "custom_resolvers": {"oc.env": oc.env},
}

# A warning a user can do nothing about, which opened every run with five screens of
# text: Kedro and kedro-mlflow register their resolvers through an OmegaConf call
# that is deprecated.
warnings.filterwarnings("ignore", r"register_new_resolver\(\) is deprecated", UserWarning)
# Great Expectations imports pyspark whenever it is installed (the `spark` extra), and
# pyspark then warns about pandas 3 in every run, Spark or not. The Spark engine's
# tests run on pandas 3 (tests/embedding/test_spark_engine.py).
warnings.filterwarnings("ignore", "PySpark does not yet fully support pandas", FutureWarning)
# MLflow's download bar is for a terminal: in a log file (a scheduler's, CI's) each
# model it loads wrote a line of some hundred carriage-returned steps.
if not sys.stderr.isatty():
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def _import_kedro_mlflow_models_quietly() -> None:
    """Import kedro-mlflow's pyfunc class without MLflow's advice to add type hints to
    its ``predict``, which opened every run. MLflow forces that warning through its own
    filter, so a filter here cannot stop it; only its display is skipped."""
    show = warnings.showwarning

    def skip_the_advice(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        if "Add type hints to the `predict` method" not in str(message):
            show(message, category, filename, lineno, file, line)

    # Only the display is swapped: warnings.catch_warnings would also drop the filters
    # that the modules imported here install.
    warnings.showwarning = skip_the_advice
    try:
        import kedro_mlflow.mlflow  # noqa: F401
    finally:
        warnings.showwarning = show


_import_kedro_mlflow_models_quietly()

# Before a run: print aeops's own errors (bad input, refused settings) without a
# traceback; refuse a misspelled --params block, check every parameter block the
# pipeline takes, and check the tracking server answers (or create the SQLite store).
# Once kedro-mlflow has opened the run: name it after the model kind, tag the commit.
# During one: keep a trained model on disk when the server goes away; close a run
# that Ctrl-C or SIGTERM stopped as KILLED.
#
# Among hooks of one priority (tryfirst), pluggy calls the last registered first:
# BriefRefusals comes last so that it wraps the exception hook before
# TrackingStoreCheck can refuse an unreachable server.
HOOKS = (
    RefuseUnknownParameters(),
    CheckParametersFirst(),
    TrackingStoreCheck(),
    DescribeRun(),
    KeepUnloggedModel(),
    CloseInterruptedRun(),
    BriefRefusals(),
)
