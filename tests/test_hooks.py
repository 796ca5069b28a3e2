"""The project's Kedro hooks, called as Kedro calls them."""

from __future__ import annotations

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from aeops.hooks import CloseInterruptedRun


@pytest.mark.usefixtures("tracking_uri")
def test_a_run_reopened_at_every_node_is_ended_killed_not_finished() -> None:
    hook = CloseInterruptedRun()
    run = mlflow.start_run()
    for _ in range(12):  # kedro-mlflow reopens its run at every node
        mlflow.start_run(run_id=run.info.run_id, nested=True)
    hook.before_pipeline_run({}, pipeline=None, catalog=None)
    try:
        hook._end_run_as_killed()  # what Ctrl-C's way out calls
    finally:
        hook.after_pipeline_run({}, pipeline=None, catalog=None)
    while mlflow.active_run() is not None:  # what MLflow's own exit handler does
        mlflow.end_run()
    assert MlflowClient().get_run(run.info.run_id).info.status == "KILLED"
