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
