"""Every objective on every data kind through the same ``train`` pipeline (in memory)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from mlflow.tracking import MlflowClient
from sklearn.metrics import roc_auc_score

from aeops.data import DataConfig, ingest, split_by_kind
from aeops.demo_data import make_image_demo, make_timeseries_demo
from aeops.models import MODEL_REGISTRY
from aeops.pipelines.train import create_pipeline
from aeops.scoring.evaluation import row_hashes
from aeops.serving import load_registered_bundle

TABULAR_DATA = {"kind": "tabular", "label_column": "label"}
SERIES_DATA = {
    "kind": "timeseries",
    "label_column": "label",
    "window": {"length": 16, "stride": 8},
    "split": {"stratify": False},
    "max_gap": "5min",
}
IMAGE_DATA = {"kind": "image", "label_column": "label", "pixel_range": [0, 16]}


def _raw(kind: str, tabular_frame: pd.DataFrame) -> pd.DataFrame:
    if kind == "timeseries":
        return make_timeseries_demo(n_steps=1200)
    if kind == "image":
        demo = make_image_demo()
        return pd.DataFrame(
            {"id": demo["ids"], "image": list(demo["images"]), "label": demo["labels"]}
        )
    return tabular_frame


def _catalog(kind: str, model_kind: str, raw: pd.DataFrame) -> DataCatalog:
    data = {"tabular": TABULAR_DATA, "timeseries": SERIES_DATA, "image": IMAGE_DATA}[kind]
    model: dict[str, Any] = {"kind": model_kind, "latent_dim": 3, "dropout": 0.0}
    model["hidden_dims"] = [8, 16] if kind == "image" else [16]
    if kind == "image":
        model["reconstruction_loss"] = "bce"
    params = {
        "data": data,
        "scaling": {"method": "minmax" if kind == "image" else "robust"},
        "model": model,
        "training": {"epochs": 3, "batch_size": 64, "lr": 0.003},
        "threshold": {"quantile": 0.9},
        "registry": {"model_name": f"kinds-{kind}-{model_kind}"},
    }
    catalog = DataCatalog({"raw_data": MemoryDataset(raw)})
    for name, value in params.items():
        catalog[f"params:{name}"] = value
    return catalog


@pytest.mark.parametrize("model_kind", sorted(MODEL_REGISTRY))
@pytest.mark.parametrize("data_kind", ["tabular", "timeseries", "image"])
def test_every_kind_trains_and_evaluates_on_every_data_kind(
    data_kind: str, model_kind: str, tabular_frame: pd.DataFrame
) -> None:
    raw = _raw(data_kind, tabular_frame)
    catalog = _catalog(data_kind, model_kind, raw)
    SequentialRunner().run(create_pipeline().to_nodes("evaluate_on_test_node"), catalog)
    metrics = catalog.load("evaluation_metrics")
    assert all(np.isfinite(v) for v in metrics.values())
    scores = catalog.load("test_scores")
    # The logged AUROC is the one the logged scores and labels give.
    expected = roc_auc_score(scores["label"], scores["reconstruction_error"])
    assert metrics["test_auroc"] == pytest.approx(expected)
    assert len(scores) == round(0.3 * len(raw))  # one score per test row or time step
    assert scores["id"].is_unique
    history = catalog.load("training_history")
    objective_terms = {"sparse": "train_sparsity_l1_loss", "vae": "train_kl_loss"}
    assert objective_terms.get(model_kind, "train_reconstruction_loss") in history
    # Three epochs: the network learns (an optimizer that never steps would not).
    assert history["validation_loss"][-1] < history["validation_loss"][0]


@pytest.mark.parametrize(
    ("data_kind", "model_kind"),
    [("image", "vae"), ("timeseries", "denoising"), ("image", "sparse")],
)
def test_named_combinations_register_and_serve_the_evaluated_scores(
    data_kind: str, model_kind: str, tabular_frame: pd.DataFrame, tracking_uri: str
) -> None:
    raw = _raw(data_kind, tabular_frame)
    catalog = _catalog(data_kind, model_kind, raw)
    with mlflow.start_run():
        SequentialRunner().run(create_pipeline(), catalog)
    registration = catalog.load("registration")
    assert registration["alias"] == "champion"
    model = mlflow.pyfunc.load_model(registration["model_uri"])
    config = DataConfig(**catalog.load("params:data"))
    test_frame = split_by_kind(ingest(raw, config), config)[2].drop(columns=["label"])
    if data_kind == "image":  # the served format: one flattened array per row
        test_frame["image"] = [
            np.asarray(a, dtype=np.float64).reshape(-1) for a in test_frame["image"]
        ]
    served = model.predict(test_frame)
    evaluated = catalog.load("test_scores")
    np.testing.assert_allclose(
        served["reconstruction_error"], evaluated["reconstruction_error"], rtol=1e-5
    )
    assert len(served["embedding"].iloc[0]) == 3
    reconstructions = model.predict(test_frame, params={"output": "reconstruction"})
    assert len(reconstructions) == len(test_frame)
    # In the input's units, as the registered bundle's own predictor gives them.
    bundle = load_registered_bundle(str(registration["model_uri"]))
    np.testing.assert_allclose(
        np.stack(reconstructions["reconstruction"]),
        bundle.predictor.reconstructions(test_frame),
        rtol=1e-5,
        atol=1e-6,
    )


def test_denoising_reconstructions_of_noisy_rows_are_closer_to_the_clean_rows(
    tracking_uri: str,
) -> None:
    rng = np.random.default_rng(0)
    clean = rng.normal(size=(1200, 2)) @ rng.normal(size=(2, 10))  # rows on a 2-D plane
    frame = pd.DataFrame(clean, columns=[f"f{i}" for i in range(10)])
    catalog = _catalog("tabular", "denoising", frame)
    catalog["params:data"] = {"kind": "tabular", "label_column": None}
    catalog["params:model"] = {
        "kind": "denoising",
        "latent_dim": 2,
        "hidden_dims": [32],
        "dropout": 0.0,
        "noise": {"kind": "gaussian", "level": 0.5},
    }
    catalog["params:training"] = {"epochs": 200, "batch_size": 128, "lr": 0.003}
    catalog["params:scaling"] = {"method": "none"}
    with mlflow.start_run():
        SequentialRunner().run(create_pipeline(), catalog)
    model = mlflow.pyfunc.load_model(catalog.load("registration")["model_uri"])
    rows = frame.iloc[:200]
    noisy = rows + rng.normal(scale=0.5, size=rows.shape)
    denoised = np.stack(model.predict(noisy, params={"output": "reconstruction"})["reconstruction"])
    noise_left = np.linalg.norm(denoised - rows.to_numpy(), axis=1).mean()
    noise_in = np.linalg.norm(noisy.to_numpy() - rows.to_numpy(), axis=1).mean()
    assert noise_left < 0.5 * noise_in


@pytest.mark.parametrize(
    ("compare_metric", "greater_is_better"),
    [("test_error_mean", False), ("test_alert_rate", False), ("test_auprc", True)],
)
def test_a_champion_reevaluated_on_new_data_has_every_metric_to_compare(
    tabular_frame: pd.DataFrame,
    tracking_uri: str,
    tmp_path: Path,
    compare_metric: str,
    greater_is_better: bool,
) -> None:
    registry = {
        "model_name": "compare-any-metric",
        "compare_metric": compare_metric,
        "greater_is_better": greater_is_better,
    }
    registrations, test_rows, all_rows = [], [], [tabular_frame]

    def train(rows: pd.DataFrame) -> None:
        catalog = _catalog("tabular", "vanilla", rows)
        catalog["params:registry"] = registry
        with mlflow.start_run():
            SequentialRunner().run(create_pipeline(), catalog)
        registrations.append(catalog.load("registration"))
        test_rows.append(rows[rows["id"].isin(catalog.load("test_scores")["id"])])

    train(tabular_frame)
    # The second run gets three quarters of the same rows under new ids (which rows a
    # champion has seen is told by their content, not their ids), and the champion's
    # test rows twice: a copy in its training split and one in its test split is a
    # row it has seen itself.
    all_rows.append(
        pd.concat(
            [tabular_frame.iloc[: len(tabular_frame) * 3 // 4], test_rows[0], test_rows[0]]
        ).assign(id=lambda frame: np.arange(len(frame)) + 5000)
    )
    train(all_rows[1])
    first, second = registrations
    assert (first["version"], first["alias"]) == ("1", "champion")
    # The champion's run recorded the rows it was fitted and tuned on: all but its
    # test split.
    client = MlflowClient()
    champion = load_registered_bundle("models:/compare-any-metric/1")
    trained_on = np.load(
        client.download_artifacts(first["run_id"], "registry/training_rows.npy", str(tmp_path))
    )
    assert len(trained_on) == len(tabular_frame) - len(test_rows[0])
    assert not np.isin(row_hashes(champion.predictor, test_rows[0]), trained_on).any()

    tags = client.get_model_version("compare-any-metric", second["version"]).tags
    assert tags["compared_with_champion"] == "reevaluated"  # other rows: another test split
    # The second run's test split is mostly rows the champion trained on; only the
    # others are compared.
    second_test = row_hashes(champion.predictor, test_rows[1])
    second_train = all_rows[1][~all_rows[1]["id"].isin(test_rows[1]["id"])]
    seen_by_champion = np.isin(second_test, trained_on)
    seen_by_itself = np.isin(second_test, row_hashes(champion.predictor, second_train))
    assert (seen_by_itself & ~seen_by_champion).any()  # the case is exercised
    seen = seen_by_champion | seen_by_itself
    assert 0 < seen.sum() < len(seen)
    assert tags["comparison_rows"] == str((~seen).sum())
    assert tags["comparison_rows_excluded"] == str(seen.sum())
    champion_value = second["champion_metric_before"]
    assert champion_value is not None, "the champion was not measured on the new data"
    assert tags[f"champion_{compare_metric}"] == f"{champion_value:.6g}"
    new_value = second["compared_metric_value"]
    assert tags[f"version_{compare_metric}"] == f"{new_value:.6g}"
    better = new_value > champion_value if greater_is_better else new_value < champion_value
    assert second["alias"] == ("champion" if better else "challenger")


def test_the_served_model_takes_what_the_library_takes(
    tabular_frame: pd.DataFrame, tracking_uri: str
) -> None:
    # An integer feature: served rows may come as int64 (as trained) or as floats.
    raw = tabular_frame.assign(f0=tabular_frame["f0"].round().astype(np.int64))
    catalog = _catalog("tabular", "vanilla", raw)
    with mlflow.start_run():
        SequentialRunner().run(create_pipeline(), catalog)
    model = mlflow.pyfunc.load_model(catalog.load("registration")["model_uri"])
    rows = raw.drop(columns=["label"]).head(20)
    as_trained = model.predict(rows)["reconstruction_error"]
    as_floats = model.predict(rows.astype({"f0": "float64"}))["reconstruction_error"]
    np.testing.assert_array_equal(as_trained, as_floats)

    # A series whose (unused) timestamps arrive as text, as pandas.read_csv gives them.
    series = make_timeseries_demo(n_steps=600)
    catalog = _catalog("timeseries", "vanilla", series)
    with mlflow.start_run():
        SequentialRunner().run(create_pipeline(), catalog)
    model = mlflow.pyfunc.load_model(catalog.load("registration")["model_uri"])
    steps = series.drop(columns=["label"]).head(64)
    as_text = steps.assign(timestamp=steps["timestamp"].astype(str))
    np.testing.assert_array_equal(
        model.predict(as_text)["reconstruction_error"],
        model.predict(steps)["reconstruction_error"],
    )


def test_the_served_image_model_takes_flat_and_shaped_images(tracking_uri: str) -> None:
    raw = _raw("image", pd.DataFrame())
    catalog = _catalog("image", "vanilla", raw)
    with mlflow.start_run():
        SequentialRunner().run(create_pipeline(), catalog)
    model = mlflow.pyfunc.load_model(catalog.load("registration")["model_uri"])
    rows = raw.drop(columns=["label"]).head(5)  # (8, 8) uint8 images
    flat = rows.assign(image=[np.asarray(c, np.float64).reshape(-1) for c in rows["image"]])
    expected = model.predict(flat)["reconstruction_error"]
    shaped = {
        "(H, W) as loaded": rows,
        "(C, H, W) float32": rows.assign(image=[c[None].astype(np.float32) for c in rows["image"]]),
        "nested lists, as JSON gives them": rows.assign(image=[c.tolist() for c in rows["image"]]),
    }
    for form, frame in shaped.items():
        np.testing.assert_array_equal(
            model.predict(frame)["reconstruction_error"], expected, err_msg=form
        )
    wrong = rows.assign(image=[np.zeros((7, 8)) for _ in range(len(rows))])
    with pytest.raises(Exception, match=r"has shape \[7, 8\]; the model expects \[1, 8, 8\]"):
        model.predict(wrong)
    flat_wrong = rows.assign(image=[np.zeros(56) for _ in range(len(rows))])
    with pytest.raises(Exception, match=r"has 56 values; the model expects 64"):
        model.predict(flat_wrong)
