"""The project's Kedro hooks, called as Kedro calls them."""

from __future__ import annotations

import mlflow
import pytest
from kedro.io import DataCatalog
from mlflow.tracking import MlflowClient

from aeops.hooks import CheckParametersFirst, CloseInterruptedRun
from aeops.pipelines import sweep, train
from aeops.pipelines._params import ParameterError


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


@pytest.mark.parametrize(
    ("pipeline", "blocks", "message"),
    [
        ("sweep", {}, r"sweep\.objective=validation_auroc needs labels .* data\.label_column"),
        ("train", {"threshold": {"method": "f1"}}, r"threshold\.method='f1' needs labels"),
    ],
)
def test_blocks_that_need_labels_are_refused_before_the_run_when_there_are_none(
    pipeline: str, blocks: dict[str, dict[str, object]], message: str
) -> None:
    nodes = {"sweep": sweep, "train": train}[pipeline].create_pipeline()
    catalog = DataCatalog()
    for name in nodes.inputs():
        if name.startswith("params:"):
            catalog[name] = blocks.get(name.removeprefix("params:"), {})
    catalog["params:data"] = {"label_column": None}
    with pytest.raises(ParameterError, match=message):
        CheckParametersFirst().before_pipeline_run({}, nodes, catalog)
    catalog["params:data"] = {"label_column": "label"}
    CheckParametersFirst().before_pipeline_run({}, nodes, catalog)  # with labels: fine


def test_a_sweep_comparing_scores_in_different_units_is_refused_before_the_run() -> None:
    nodes = sweep.create_pipeline()
    catalog = DataCatalog()
    for name in nodes.inputs():
        if name.startswith("params:"):
            catalog[name] = {}
    catalog["params:model"] = {"anomaly_score": "elbo"}
    catalog["params:sweep"] = {
        "objective": "validation_error",
        "space": {"model.kind": ["vanilla", "vae"]},
    }
    with pytest.raises(ParameterError, match=r"different units across .*'model\.kind'"):
        CheckParametersFirst().before_pipeline_run({}, nodes, catalog)
    catalog["params:model"] = {"anomaly_score": "reconstruction"}  # every trial: its error
    CheckParametersFirst().before_pipeline_run({}, nodes, catalog)
