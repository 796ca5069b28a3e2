"""The evaluate pipeline's node, called directly (no kedro run), on a real MLflow store."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from aeops.bundle import BundleSpec, LoadedBundle
from aeops.data import DataConfig, TabularInputs, fit_scaler
from aeops.models import ModelConfig, build_model
from aeops.pipelines.evaluate.nodes import evaluate_registered_model
from aeops.scoring import Predictor, Threshold
from aeops.validation import DataValidationError, build_suite, suite_to_dict
from conftest import make_tabular

FEATURES = [f"f{i}" for i in range(6)]


def _bundle(frame: pd.DataFrame) -> LoadedBundle:
    torch.manual_seed(0)
    model = build_model(ModelConfig(architecture="mlp", latent_dim=2, hidden_dims=(8,)), (6,))
    scaler = fit_scaler(frame[FEATURES].to_numpy(), FEATURES, "robust")
    predictor = Predictor(model.eval(), TabularInputs(tuple(FEATURES)), scaler, Threshold(1.0, "x"))
    suite = build_suite(
        frame, id_column="id", feature_columns=FEATURES, label_column="label", min_rows=100
    )
    data = DataConfig(label_column="label", feature_columns=tuple(FEATURES))
    spec = BundleSpec("id", suite_to_dict(suite), data.model_dump(mode="json"))
    return LoadedBundle(predictor, spec, {})


@pytest.mark.usefixtures("tracking_uri")
def test_evaluate_takes_a_small_unlabelled_sample_and_still_checks_the_rest() -> None:
    # The training suite asked for the label and at least 100 rows; a later month's
    # unlabelled sample of 30 rows failed on both, though evaluation needs neither.
    frame = make_tabular()
    bundle = _bundle(frame)
    with mlflow.start_run():
        metrics, scores, _, _ = evaluate_registered_model(bundle, frame.head(30), {})
        assert "eval_auroc" in metrics  # labelled: measured
        metrics, scores, _, _ = evaluate_registered_model(
            bundle, frame.head(30).drop(columns="label"), {}
        )
    assert "eval_auroc" not in metrics
    assert metrics["eval_alert_rate"] == pytest.approx(float(scores["is_anomaly"].mean()))
    # The model's own threshold, not one chosen on the data being evaluated.
    assert metrics["threshold"] == bundle.predictor.threshold.value
    errors = scores["reconstruction_error"].to_numpy()
    np.testing.assert_array_equal(scores["is_anomaly"], errors > bundle.predictor.threshold.value)
    assert 0 < scores["is_anomaly"].sum() < len(scores)  # the check can tell thresholds apart
    np.testing.assert_array_equal(scores["id"], frame["id"].head(30))
    bad_label = frame.head(30).assign(label=7)
    with mlflow.start_run(), pytest.raises(DataValidationError, match="'label'"):
        evaluate_registered_model(bundle, bad_label, {})
    missing = frame.head(30).drop(columns="f2")
    with mlflow.start_run(), pytest.raises(DataValidationError, match="'f2'"):
        evaluate_registered_model(bundle, missing, {})
