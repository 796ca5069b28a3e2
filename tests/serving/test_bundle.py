from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from aeops.data import TabularInputs, fit_scaler
from aeops.models import ModelConfig, build_model
from aeops.scoring import Predictor, Threshold
from aeops.serving import (
    CHALLENGER,
    CHAMPION,
    BundleSpec,
    RegistryConfig,
    read_bundle,
    register_bundle,
    write_bundle,
)

COLUMNS = ["a", "b", "c", "d"]


def _predictor(seed: int = 0) -> Predictor:
    torch.manual_seed(seed)
    model = build_model(ModelConfig(architecture="mlp", latent_dim=2, hidden_dims=(8,)), (4,))
    model.eval()
    values = np.random.default_rng(seed).normal(size=(50, 4))
    scaler = fit_scaler(values, COLUMNS, "robust")
    threshold = Threshold(0.5, "quantile", {"quantile": 0.9})
    return Predictor(model, TabularInputs(tuple(COLUMNS)), scaler, threshold)


def _rows(n: int = 6) -> pd.DataFrame:
    frame = pd.DataFrame(np.random.default_rng(1).normal(size=(n, 4)), columns=COLUMNS)
    frame.insert(0, "key", np.arange(n, dtype=np.int64) + 100)
    return frame


SPEC = BundleSpec(id_column="key", data={"kind": "tabular"})


def test_bundle_files_rebuild_identical_answers(tmp_path: Path) -> None:
    predictor = _predictor()
    write_bundle(tmp_path, predictor, SPEC)
    again, spec = read_bundle(tmp_path)
    assert spec == SPEC
    first, second = predictor.score_frame(_rows()), again.score_frame(_rows())
    np.testing.assert_array_equal(first.reconstruction_error, second.reconstruction_error)
    np.testing.assert_array_equal(first.embedding, second.embedding)
    assert again.threshold == predictor.threshold
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle.json", "state_dict.pt"]


def _register(metrics: dict[str, float], seed: int = 0) -> dict[str, object]:
    config = RegistryConfig(model_name="unit-model", compare_metric="test_auroc")
    with mlflow.start_run():
        mlflow.log_metrics(metrics)
        registration = register_bundle(
            _predictor(seed), SPEC, _rows(3), metrics, config, {"t": "1"}
        )
    return registration.to_dict()


@pytest.mark.usefixtures("tracking_uri")
def test_champion_only_moves_to_a_better_version() -> None:
    first = _register({"test_auroc": 0.80})
    assert (first["version"], first["alias"]) == ("1", CHAMPION)
    worse = _register({"test_auroc": 0.70})
    assert (worse["version"], worse["alias"]) == ("2", CHALLENGER)
    assert worse["champion_metric_before"] == pytest.approx(0.80)
    no_metric = _register({})
    assert no_metric["alias"] == CHALLENGER
    better = _register({"test_auroc": 0.90})
    assert (better["version"], better["alias"]) == ("4", CHAMPION)
    client = MlflowClient()
    assert str(client.get_model_version_by_alias("unit-model", CHAMPION).version) == "4"
    tags = client.get_model_version("unit-model", "4").tags
    assert tags["metric.test_auroc"] == "0.9"
    assert tags["t"] == "1"


@pytest.mark.usefixtures("tracking_uri")
def test_logged_pyfunc_predicts_like_the_predictor_with_and_without_ids() -> None:
    registration = _register({"test_auroc": 0.8})
    model = mlflow.pyfunc.load_model(str(registration["model_uri"]))
    rows = _rows()
    expected = _predictor().score_frame(rows)
    answers = model.predict(rows)
    assert list(answers.columns) == ["key", "embedding", "reconstruction_error", "is_anomaly"]
    assert answers["key"].tolist() == rows["key"].tolist()
    np.testing.assert_allclose(answers["reconstruction_error"], expected.reconstruction_error)
    np.testing.assert_allclose(np.stack(answers["embedding"]), expected.embedding)
    only_errors = model.predict(
        rows.drop(columns=["key"]), params={"output": "reconstruction_error"}
    )
    assert list(only_errors.columns) == ["key", "reconstruction_error"]
    assert only_errors["key"].tolist() == list(range(len(rows)))


@pytest.mark.usefixtures("tracking_uri")
def test_pyfunc_rejects_rows_without_the_feature_columns() -> None:
    registration = _register({"test_auroc": 0.8})
    model = mlflow.pyfunc.load_model(str(registration["model_uri"]))
    with pytest.raises(MlflowException, match=r"Model is missing inputs \['d'\]"):
        model.predict(_rows().drop(columns=["d"]))


def test_register_needs_an_active_run(tracking_uri: str) -> None:
    with pytest.raises(RuntimeError, match="active MLflow run"):
        register_bundle(_predictor(), SPEC, _rows(2), {}, RegistryConfig(), {})
