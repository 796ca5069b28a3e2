"""Node unit tests on tiny frames, and a pipeline slice on an in-memory catalog."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Node, Pipeline
from kedro.runner import SequentialRunner

from aeops.pipelines._params import ParameterError
from aeops.pipelines.train import create_pipeline
from aeops.pipelines.train.nodes import (
    choose_anomaly_threshold,
    enforce_validation,
    fit_feature_scaler,
    ingest_raw_data,
    train_autoencoder,
    validate_raw_data,
)
from aeops.validation import DataValidationError

DATA = {"id_column": "id", "label_column": "label", "min_rows": 20}
MODEL = {"kind": "vanilla", "latent_dim": 2, "hidden_dims": [16], "dropout": 0.0}
TRAINING = {"epochs": 150, "batch_size": 64, "lr": 0.005, "seed": 0}


def test_ingest_node_keeps_the_input_unchanged(tabular_frame: pd.DataFrame) -> None:
    before = tabular_frame.copy()
    frame = ingest_raw_data(tabular_frame.drop(columns=["id"]), {**DATA})
    assert frame.columns[0] == "id"
    pd.testing.assert_frame_equal(tabular_frame, before)


def test_bad_parameters_name_the_area_and_key(tabular_frame: pd.DataFrame) -> None:
    with pytest.raises(ParameterError, match=r"data\.split\.test: Input should be less than 1"):
        ingest_raw_data(tabular_frame, {**DATA, "split": {"test": 1.5}})
    with pytest.raises(ParameterError, match=r"data\.id_colum: Extra inputs are not permitted"):
        ingest_raw_data(tabular_frame, {"id_colum": "x"})


def test_validation_gate_passes_clean_data_and_stops_bad_data(
    tabular_frame: pd.DataFrame,
) -> None:
    report, report_json, suite = validate_raw_data(tabular_frame, DATA)
    assert report.success and report_json["success"] is True
    assert suite["expectations"]
    assert enforce_validation(tabular_frame, report) is tabular_frame

    bad = tabular_frame.copy()
    bad.loc[3, "f2"] = np.inf
    report, report_json, _ = validate_raw_data(bad, DATA)
    assert report_json["success"] is False
    with pytest.raises(DataValidationError, match=r"f2.*1003"):
        enforce_validation(bad, report)


def _suite(frame: pd.DataFrame) -> dict[str, Any]:
    return validate_raw_data(frame, DATA)[2]


def test_scaler_node_uses_the_configured_method(tabular_frame: pd.DataFrame) -> None:
    suite = _suite(tabular_frame)
    spec, scaler = fit_feature_scaler(tabular_frame, suite, DATA, {"method": "minmax"})
    assert spec.sample_shape == (6,)
    assert scaler.method == "minmax"
    assert scaler.columns == tuple(f"f{i}" for i in range(6))
    with pytest.raises(ParameterError, match=r"scaling\.method"):
        fit_feature_scaler(tabular_frame, suite, DATA, {"method": "zscore"})


def test_the_features_are_those_validation_chose_on_the_whole_table(
    tabular_frame: pd.DataFrame,
) -> None:
    # Text of which 48% parse as numbers: not a feature of the whole table, so never
    # validated. Chosen again on a split where they are the majority, it became one,
    # and training failed on it.
    frame = tabular_frame.copy()
    frame["code"] = ["A" if i % 25 >= 12 else str(i) for i in range(len(frame))]
    report, _, suite = validate_raw_data(frame, DATA)
    assert report.success
    train = frame[frame["code"] != "A"].head(60)  # numbers only
    spec, scaler = fit_feature_scaler(train, suite, DATA, {"method": "robust"})
    assert scaler.columns == tuple(f"f{i}" for i in range(6))
    assert spec.sample_shape == (6,)


def test_train_node_follows_the_seed_and_reports_history(tabular_frame: pd.DataFrame) -> None:
    spec, scaler = fit_feature_scaler(
        tabular_frame, _suite(tabular_frame), DATA, {"method": "robust"}
    )
    args = (tabular_frame.iloc[:150], tabular_frame.iloc[150:], spec, scaler, MODEL)
    config = {**TRAINING, "epochs": 5}
    model_a, history, figure = train_autoencoder(*args, config, DATA)
    model_b, _, _ = train_autoencoder(*args, config, DATA)
    for a, b in zip(model_a.state_dict().values(), model_b.state_dict().values(), strict=True):
        assert np.array_equal(a.numpy(), b.numpy())
    assert model_a.config.architecture == "mlp"  # resolved from data.kind
    assert len(history["train_loss"]) == history["epochs_trained"] == 5
    assert figure.axes


def test_a_resumed_fit_reports_the_epoch_it_resumed_from(
    tabular_frame: pd.DataFrame, tmp_path: Path
) -> None:
    # Its earlier epochs ran in the stopped run; MLflow showed no sign of it.
    spec, scaler = fit_feature_scaler(
        tabular_frame, _suite(tabular_frame), DATA, {"method": "robust"}
    )
    args = (tabular_frame.iloc[:150], tabular_frame.iloc[150:], spec, scaler, MODEL)
    checkpoints = {"checkpoint_dir": str(tmp_path), "checkpoint_every": 1, "resume": True}
    _, first, _ = train_autoencoder(*args, {**TRAINING, "epochs": 3, **checkpoints}, DATA)
    assert "resumed_from_epoch" not in first
    _, resumed, _ = train_autoencoder(*args, {**TRAINING, "epochs": 5, **checkpoints}, DATA)
    assert resumed["resumed_from_epoch"] == 3
    assert resumed["epochs_trained"] == 5


def _memory_catalog(raw: pd.DataFrame, data: dict[str, Any]) -> DataCatalog:
    catalog = DataCatalog({"raw_data": MemoryDataset(raw)})
    params = {
        "data": data,
        "scaling": {"method": "robust"},
        "model": MODEL,
        "training": TRAINING,
        "threshold": {"method": "quantile", "quantile": 0.9},
        "registry": {"model_name": "never-registered"},
    }
    for name, value in params.items():
        catalog[f"params:{name}"] = value
    return catalog


def test_pipeline_slice_finds_the_anomalies(tabular_frame: pd.DataFrame) -> None:
    pipeline = create_pipeline().to_nodes("evaluate_on_test_node")
    catalog = _memory_catalog(tabular_frame, DATA)
    SequentialRunner().run(pipeline, catalog)
    metrics = catalog.load("evaluation_metrics")
    # Anomalies are shifted 3 sigma off a 2-D plane: an autoencoder separates them.
    assert metrics["test_auroc"] > 0.95
    assert metrics["test_recall"] > 0.5
    scores = catalog.load("test_scores")
    assert len(scores) == 60
    assert set(scores["id"]) <= set(tabular_frame["id"])
    assert scores["reconstruction_error"].notna().all()


def test_each_step_sees_only_its_own_split(tabular_frame: pd.DataFrame) -> None:
    """The scaler and the weights come from the training rows, the threshold from the
    validation rows; the test rows reach none of them."""
    kept = ["train_frame", "validation_frame", "test_frame", "validation_suite"]
    kept += ["input_spec", "scaler", "trained_model", "anomaly_threshold"]
    keep = Node(lambda *values: values, inputs=kept, outputs="kept", name="keep")
    pipeline = create_pipeline().to_nodes("choose_anomaly_threshold_node") + Pipeline([keep])
    catalog = _memory_catalog(tabular_frame, DATA)
    SequentialRunner().run(pipeline, catalog)
    train, validation, test, suite, spec, scaler, model, chosen = catalog.load("kept")

    def center(rows: pd.DataFrame) -> np.ndarray:
        return fit_feature_scaler(rows, suite, DATA, {"method": "robust"})[1].center

    assert np.array_equal(scaler.center, center(train))
    assert not np.allclose(scaler.center, center(pd.concat([train, validation, test])))
    retrained, _, _ = train_autoencoder(train, validation, spec, scaler, MODEL, TRAINING, DATA)
    weights = retrained.state_dict()
    for name, value in model.state_dict().items():
        assert torch.equal(value, weights[name]), name
    params = ({"method": "quantile", "quantile": 0.9}, DATA)
    on_validation = choose_anomaly_threshold(model, spec, scaler, validation, *params)
    on_test = choose_anomaly_threshold(model, spec, scaler, test, *params)
    assert chosen.value == on_validation.value != on_test.value


def test_pipeline_slice_stops_before_training_on_bad_data(tabular_frame: pd.DataFrame) -> None:
    bad = tabular_frame.copy()
    bad["f1"] = bad["f1"].astype(object)
    bad.loc[5, "f1"] = "abc"
    catalog = _memory_catalog(bad, DATA)
    with pytest.raises(DataValidationError, match=r"'f1'.*abc"):
        SequentialRunner().run(create_pipeline(), catalog)
    assert catalog.load("validation_report")["success"] is False
    assert not catalog.exists("train_frame")  # nothing downstream of the gate ran


@pytest.mark.parametrize("method", ["f1", "fpr", "mad"])
def test_threshold_methods_run_in_the_pipeline_on_validation_labels(
    tabular_frame: pd.DataFrame, method: str
) -> None:
    catalog = _memory_catalog(tabular_frame, DATA)
    catalog["params:threshold"] = {"method": method}
    SequentialRunner().run(create_pipeline().to_nodes("evaluate_on_test_node"), catalog)
    metrics = catalog.load("evaluation_metrics")
    assert metrics["threshold"] > 0
    assert metrics["test_f1"] > 0.5  # shifted anomalies: any sensible threshold finds them
    # The method asked for is the one that chose it (the evaluation consumed it above).
    catalog = _memory_catalog(tabular_frame, DATA)
    catalog["params:threshold"] = {"method": method}
    SequentialRunner().run(create_pipeline().to_nodes("choose_anomaly_threshold_node"), catalog)
    chosen = catalog.load("anomaly_threshold")
    assert (chosen.method, chosen.value) == (method, metrics["threshold"])
