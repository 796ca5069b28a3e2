"""Kedro project settings."""

import warnings

from omegaconf.resolvers import oc

from aeops.hooks import (
    CheckParametersFirst,
    CloseInterruptedRun,
    KeepUnloggedModel,
    RefuseUnknownParameters,
    TrackingStoreCheck,
)

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

# Before a run: refuse a misspelled --params block, check every parameter block the
# pipeline takes, and check the tracking server answers (or create the SQLite store).
# During one: keep a trained model on disk when the server goes away; close a run
# that Ctrl-C or SIGTERM stopped as KILLED.
HOOKS = (
    RefuseUnknownParameters(),
    CheckParametersFirst(),
    TrackingStoreCheck(),
    KeepUnloggedModel(),
    CloseInterruptedRun(),
)
