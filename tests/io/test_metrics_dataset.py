"""Metrics logged to the active MLflow run: every refusal names the metric."""

from __future__ import annotations

from typing import Any

import mlflow
import pytest
from kedro.io import DatasetError

from aeops.io import MlflowMetricHistoryBatchDataset


@pytest.mark.usefixtures("tracking_uri")
@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, r"metric 'auroc' is None at step 0, not a number"),
        ("high", r"metric 'auroc' is 'high' at step 0, not a number"),
        ([0.5, float("inf")], r"metric 'auroc' is inf at step 1"),
    ],
)
def test_a_value_that_is_no_finite_number_is_named_and_nothing_is_logged(
    value: Any, message: str
) -> None:
    with mlflow.start_run() as run, pytest.raises(DatasetError, match=message):
        MlflowMetricHistoryBatchDataset().save({"loss": 0.1, "auroc": value})
    assert mlflow.get_run(run.info.run_id).data.metrics == {}


@pytest.mark.usefixtures("tracking_uri")
def test_each_step_is_logged_at_its_own_time_and_the_times_are_no_metric() -> None:
    # Every point of a training curve carried the time of the save.
    dataset = MlflowMetricHistoryBatchDataset(first_step=1, timestamps="epoch_end_time")
    ended = [1_790_000_000.0, 1_790_000_002.5, 1_790_000_005.0]
    with mlflow.start_run() as run:
        dataset.save({"loss": [0.3, 0.2, 0.1], "epoch_end_time": ended, "best_epoch": 3})
    client = mlflow.MlflowClient()
    points = client.get_metric_history(run.info.run_id, "loss")
    stamped = [(p.step, p.timestamp) for p in points]
    assert stamped == [(1, 1_790_000_000_000), (2, 1_790_000_002_500), (3, 1_790_000_005_000)]
    assert "epoch_end_time" not in mlflow.get_run(run.info.run_id).data.metrics
    assert [p.step for p in client.get_metric_history(run.info.run_id, "best_epoch")] == [1]


@pytest.mark.usefixtures("tracking_uri")
def test_epochs_without_a_time_put_the_whole_curve_at_the_save() -> None:
    # Resumed from an older checkpoint, epochs 1-2 had no time: they were logged after
    # epochs 3-4, and the curve's times ran backwards. The key is never a metric.
    ended = [float("nan"), float("nan"), 1_790_000_000.0, 1_790_000_001.0]
    with mlflow.start_run() as run:
        MlflowMetricHistoryBatchDataset().save(
            {"loss": [4.0, 3.0, 2.0, 1.0], "epoch_end_time": ended}
        )
    points = mlflow.MlflowClient().get_metric_history(run.info.run_id, "loss")
    assert [p.step for p in points] == [0, 1, 2, 3]
    assert len({p.timestamp for p in points}) == 1
    assert set(mlflow.get_run(run.info.run_id).data.metrics) == {"loss"}
