"""Kedro project settings."""

from omegaconf.resolvers import oc

from aeops.hooks import TrackingStoreCheck

# `${oc.env:MLFLOW_TRACKING_URI,sqlite:///mlflow.db}` in mlflow.yml lets an environment
# variable point runs at an `mlflow server`; Kedro only enables oc.env for credentials.
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "custom_resolvers": {"oc.env": oc.env},
}

# Checks the tracking server answers (or creates the SQLite store) before a run.
HOOKS = (TrackingStoreCheck(),)
