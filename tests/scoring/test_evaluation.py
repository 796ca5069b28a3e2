"""Evaluation of a predictor: per-feature errors, smoothing, and the figures per data kind."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from aeops.data import (
    ImageInputs,
    TabularInputs,
    WindowInputs,
    fit_scaler,
    input_spec_from_dict,
    trailing_mean,
)
from aeops.models import ModelConfig, build_model
from aeops.scoring import InputSchemaError, Predictor, Threshold, detection_metrics
from aeops.scoring.evaluation import evaluate_frame, feature_error_table, row_hashes
from aeops.scoring.plots import image_grid, sample_grid


def test_feature_error_table_ranks_the_feature_anomalies_are_off_in() -> None:
    errors = np.array(
        [
            [0.1, 0.2, 0.1],
            [0.1, 0.3, 0.1],
            [0.2, 0.1, 5.0],  # anomaly: feature c
            [0.1, 0.3, 4.0],  # anomaly: feature c
        ]
    )
    table = feature_error_table(["a", "b", "c"], errors, np.array([0, 0, 1, 1]))
    assert table["feature"].tolist() == ["c", "b", "a"]
    c = table.iloc[0]
    assert c["mean_error_anomaly"] == pytest.approx(4.5)
    assert c["mean_error_normal"] == pytest.approx(0.1)
    assert c["lift"] == pytest.approx(45.0)
    assert table["share_of_error"].sum() == pytest.approx(1.0)


def test_feature_error_table_without_labels_ranks_by_mean_error() -> None:
    table = feature_error_table(["a", "b"], np.array([[1.0, 3.0], [1.0, 5.0]]), None)
    assert table["feature"].tolist() == ["b", "a"]
    assert "lift" not in table.columns


def test_trailing_mean_uses_only_past_steps() -> None:
    values = np.array([0.0, 0.0, 9.0, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(trailing_mean(values, 3), [0, 0, 3, 3, 3, 0])
    np.testing.assert_allclose(trailing_mean(values, 1), values)
    np.testing.assert_allclose(trailing_mean(np.array([2.0, 4.0]), 5), [2.0, 3.0])


def test_trailing_mean_recovers_after_a_huge_value() -> None:
    huge = float(np.finfo(np.float32).max)  # what score_mean puts in place of an overflow
    values = np.array([1.0, huge, 2.0, 4.0, 6.0, 0.5, 0.25])
    smoothed = trailing_mean(values, 2)
    np.testing.assert_allclose(smoothed[3:], [3.0, 5.0, 3.25, 0.375])
    assert smoothed[1] == smoothed[2] == pytest.approx(huge / 2)


def _model(config: ModelConfig, shape: tuple[int, ...]) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(config, shape)


def test_window_smoothing_is_applied_to_scores_and_survives_the_json_form() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"id": range(60), "x": rng.normal(size=60), "y": rng.normal(size=60)})
    scaler = fit_scaler(frame[["x", "y"]].to_numpy(), ["x", "y"], "standard")
    config = ModelConfig(architecture="recurrent", latent_dim=2, hidden_dims=(4,))
    model = _model(config, (8, 2))
    raw = Predictor(model, WindowInputs(("x", "y"), 8, 2), scaler).reconstruction_errors(frame)
    smoothed_spec = WindowInputs(("x", "y"), 8, 2, smoothing=5)
    assert input_spec_from_dict(smoothed_spec.to_dict()) == smoothed_spec
    smoothed = Predictor(model, smoothed_spec, scaler).reconstruction_errors(frame)
    np.testing.assert_allclose(smoothed, trailing_mean(raw, 5), rtol=1e-6)
    assert smoothed.std() < raw.std()


def test_evaluate_frame_on_tabular_rows_gives_metrics_table_and_figures() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(size=(40, 3))
    values[:4] += 6.0
    frame = pd.DataFrame(values, columns=["a", "b", "c"])
    frame.insert(0, "id", range(40))
    frame["label"] = [1] * 4 + [0] * 36
    scaler = fit_scaler(values[4:], ["a", "b", "c"], "standard")
    model = _model(ModelConfig(architecture="mlp", latent_dim=2, hidden_dims=(4,)), (3,))
    predictor = Predictor(model, TabularInputs(("a", "b", "c")), scaler, Threshold(1.0, "fixed"))
    evaluation = evaluate_frame(predictor, frame, "id", "label", prefix="eval")
    assert evaluation.metrics["eval_auroc"] > 0.9  # far-off rows reconstruct badly
    assert evaluation.metrics["threshold"] == 1.0
    assert evaluation.scores.columns.tolist() == [
        "id",
        "reconstruction_error",
        "is_anomaly",
        "label",
    ]
    scores = evaluation.scores
    np.testing.assert_array_equal(scores["id"], frame["id"])  # the rows in their order
    np.testing.assert_array_equal(scores["label"], frame["label"])
    errors = predictor.reconstruction_errors(frame.drop(columns=["id", "label"]))
    np.testing.assert_array_equal(scores["reconstruction_error"], errors)
    np.testing.assert_array_equal(scores["is_anomaly"], errors > 1.0)
    assert 0 < scores["is_anomaly"].sum() < len(scores)  # the threshold splits these rows
    assert sorted(evaluation.feature_errors["feature"]) == ["a", "b", "c"]
    assert set(evaluation.figures) == {
        "error_histogram.png",
        "roc_curve.png",
        "pr_curve.png",
        "embeddings_pca.png",
        "feature_errors.png",
    }


@pytest.mark.parametrize(
    ("kind", "anomaly_score", "named"),
    [
        ("vanilla", "elbo", "reconstruction error"),  # only a VAE has an ELBO
        ("vae", "elbo", "negative ELBO"),
        ("vae", "reconstruction", "reconstruction error"),
    ],
)
def test_the_score_histogram_names_what_the_model_scores_by(
    kind: str, anomaly_score: str, named: str
) -> None:
    values = np.random.default_rng(0).normal(size=(30, 3))
    frame = pd.DataFrame(values, columns=["a", "b", "c"]).assign(id=range(30))
    scaler = fit_scaler(values, ["a", "b", "c"], "standard")
    config = ModelConfig(kind=kind, latent_dim=2, hidden_dims=(4,), anomaly_score=anomaly_score)
    model = _model(config.model_copy(update={"architecture": "mlp"}), (3,))
    predictor = Predictor(model, TabularInputs(("a", "b", "c")), scaler, Threshold(1.0, "fixed"))
    axis = evaluate_frame(predictor, frame, "id", None).figures["error_histogram.png"].axes[0]
    assert axis.get_xlabel() == f"{named} (log scale)"
    assert axis.get_title() == f"Test scores: {named}"


def test_evaluate_frame_without_labels_draws_no_roc_or_pr_curve() -> None:
    values = np.random.default_rng(0).normal(size=(30, 3))
    frame = pd.DataFrame(values, columns=["a", "b", "c"]).assign(id=range(30))
    scaler = fit_scaler(values, ["a", "b", "c"], "standard")
    model = _model(ModelConfig(architecture="mlp", latent_dim=2, hidden_dims=(4,)), (3,))
    predictor = Predictor(model, TabularInputs(("a", "b", "c")), scaler, Threshold(1.0, "fixed"))
    evaluation = evaluate_frame(predictor, frame, "id", None, prefix="eval")
    assert set(evaluation.figures) == {
        "error_histogram.png",
        "embeddings_pca.png",
        "feature_errors.png",
    }
    assert "eval_auroc" not in evaluation.metrics


def test_a_row_beyond_the_models_float32_range_scores_highest_and_evaluates() -> None:
    rng = np.random.default_rng(1)
    values = rng.normal(size=(40, 3))
    # Finite inputs: a squared error that overflows float32, and activations that do.
    values[0] = [1e25, 0.0, 0.0]
    values[1] = [3e38, -3e38, 3e38]
    frame = pd.DataFrame(values, columns=["a", "b", "c"])
    frame.insert(0, "id", range(40))
    frame["label"] = [1, 1] + [0] * 38
    scaler = fit_scaler(values[2:], ["a", "b", "c"], "standard")
    model = _model(ModelConfig(architecture="mlp", latent_dim=2, hidden_dims=(4,)), (3,))
    predictor = Predictor(model, TabularInputs(("a", "b", "c")), scaler, Threshold(5.0, "fixed"))
    errors = predictor.reconstruction_errors(frame.drop(columns=["id", "label"]))
    assert np.isfinite(errors).all()
    assert errors[:2].min() > errors[2:].max()
    evaluation = evaluate_frame(predictor, frame, "id", "label", prefix="eval")
    assert evaluation.metrics["eval_auroc"] == 1.0
    assert evaluation.scores["is_anomaly"][:2].all()
    assert all(np.isfinite(value) for value in evaluation.metrics.values())
    assert np.isfinite(evaluation.feature_errors.select_dtypes("number").to_numpy()).all()


def test_a_step_beyond_the_models_float32_range_does_not_spread_nan_through_smoothing() -> None:
    rng = np.random.default_rng(2)
    frame = pd.DataFrame({"x": rng.normal(size=60), "y": rng.normal(size=60)})
    frame.loc[30, ["x", "y"]] = [3e38, -3e38]
    scaler = fit_scaler(frame[["x", "y"]].to_numpy()[:20], ["x", "y"], "standard")
    config = ModelConfig(architecture="recurrent", latent_dim=2, hidden_dims=(4,))
    spec = WindowInputs(("x", "y"), 8, 2, smoothing=5)
    scores = Predictor(_model(config, (8, 2)), spec, scaler).reconstruction_errors(frame)
    assert np.isfinite(scores).all()
    assert scores[30:35].min() > scores[:24].max()  # the step and those smoothing it
    # Later steps get their own scores back once the step has left the smoothing window.
    unsmoothed = Predictor(
        _model(config, (8, 2)), WindowInputs(("x", "y"), 8, 2), scaler
    ).reconstruction_errors(frame)
    later = slice(45, 60)  # past every window that covers step 30, and the smoothing after
    np.testing.assert_allclose(scores[later], trailing_mean(unsmoothed, 5)[later], rtol=1e-6)
    assert scores[later].min() > 0


def test_evaluate_frame_draws_image_reconstructions() -> None:
    rng = np.random.default_rng(0)
    images = list(rng.uniform(size=(12, 1, 8, 8)))
    frame = pd.DataFrame({"id": range(12), "image": images})
    scaler = fit_scaler(np.stack(images).reshape(12, -1), ["image"], "minmax", per_column=False)
    config = ModelConfig(architecture="conv", latent_dim=2, hidden_dims=(4,))
    predictor = Predictor(
        _model(config, (1, 8, 8)), ImageInputs("image", (1, 8, 8)), scaler, Threshold(0.5, "x")
    )
    evaluation = evaluate_frame(predictor, frame, "id", None)
    assert "image_reconstructions.png" in evaluation.figures
    assert "test_auroc" not in evaluation.metrics
    assert len(evaluation.feature_errors) == 64  # one row per pixel


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_image_plots_draw_any_number_of_channels(channels: int) -> None:
    # matplotlib draws 1, 3 or 4 channels: two raised a TypeError, which failed evaluation.
    images = np.random.default_rng(0).uniform(size=(5, channels, 6, 6))
    grid = image_grid(images, images * 0.9, np.arange(5.0), per_row=3)
    samples = sample_grid(images, per_row=3)
    drawn = [axis.images[0].get_array() for axis in grid.axes if axis.images]
    assert len(drawn) == 12  # 3 highest and 3 lowest, each input and reconstruction
    assert drawn[0].shape == ((6, 6) if channels < 3 else (6, 6, 3))
    assert sum(1 for axis in samples.axes if axis.images) == 5


def test_evaluate_frame_draws_the_series_with_its_scores() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "id": range(50),
            "timestamp": pd.date_range("2026-01-01", periods=50, freq="min"),
            "x": rng.normal(size=50),
            "label": [0] * 40 + [1] * 10,
        }
    )
    scaler = fit_scaler(frame[["x"]].to_numpy(), ["x"], "standard")
    config = ModelConfig(architecture="recurrent", latent_dim=2, hidden_dims=(4,))
    predictor = Predictor(
        _model(config, (8, 1)), WindowInputs(("x",), 8, 4), scaler, Threshold(1.0, "x")
    )
    evaluation = evaluate_frame(predictor, frame, "id", "label", timestamp_column="timestamp")
    assert "series_scores.png" in evaluation.figures
    assert evaluation.feature_errors["feature"].tolist() == ["x"]
    assert len(evaluation.scores) == 50


def _tabular_predictor(columns: tuple[str, ...]) -> Predictor:
    # Row hashes read only the inputs; the network is never run here.
    model = build_model(ModelConfig(architecture="mlp", latent_dim=2, hidden_dims=(4,)), (4,))
    scaler = fit_scaler(
        np.random.default_rng(0).normal(size=(20, len(columns))), list(columns), "none"
    )
    return Predictor(model, TabularInputs(columns), scaler, Threshold(1.0, "quantile", {}))


def test_row_hashes_tell_rows_by_their_content_not_their_ids_or_dtypes() -> None:
    predictor = _tabular_predictor(("a", "b"))
    rows = pd.DataFrame({"id": [1, 2, 3], "a": [1, 2, 0], "b": [0.5, 0.5, 0.0], "extra": "x"})
    same_content = pd.DataFrame(
        {"id": ["r7", "r8", "r9"], "b": [0.5, 0.5, -0.0], "a": [1.0, 2.0, 0.0]}
    )
    hashes = row_hashes(predictor, rows)
    assert hashes.dtype == np.uint64 and len(set(hashes.tolist())) == 3
    np.testing.assert_array_equal(row_hashes(predictor, same_content), hashes)
    changed = same_content.assign(b=[0.5, 0.5000001, 0.0])
    assert (row_hashes(predictor, changed) == hashes).tolist() == [True, False, True]


def test_row_hashes_of_a_series_step_include_its_time() -> None:
    predictor = _tabular_predictor(("v",))
    stamps = pd.to_datetime(["2026-01-01 00:00", "2026-01-01 00:05"]).as_unit("ns")
    steps = pd.DataFrame({"timestamp": stamps, "v": [1.0, 1.0]})  # one reading, twice
    hashes = row_hashes(predictor, steps, "timestamp")
    assert hashes[0] != hashes[1]
    for unit in ("us", "s"):  # as parsed from CSV (pandas 3) or another source
        other_unit = steps.assign(timestamp=stamps.as_unit(unit))
        np.testing.assert_array_equal(row_hashes(predictor, other_unit, "timestamp"), hashes)


def test_row_hashes_need_the_predictors_inputs() -> None:
    with pytest.raises(InputSchemaError, match="b"):
        row_hashes(_tabular_predictor(("a", "b")), pd.DataFrame({"a": [1.0]}))


def test_an_error_equal_to_the_threshold_is_not_flagged_anywhere() -> None:
    # Thresholds such as fpr's are an actual validation error: ">=" would flag that row.
    rng = np.random.default_rng(4)
    values = rng.normal(size=(30, 3))
    frame = pd.DataFrame(values, columns=["a", "b", "c"])
    frame.insert(0, "id", range(30))
    frame["label"] = [1] * 5 + [0] * 25
    scaler = fit_scaler(values, ["a", "b", "c"], "standard")
    model = _model(ModelConfig(architecture="mlp", latent_dim=2, hidden_dims=(4,)), (3,))
    bare = Predictor(model, TabularInputs(("a", "b", "c")), scaler)
    errors = bare.reconstruction_errors(frame.drop(columns=["id", "label"]))
    at = float(np.sort(errors)[20])  # an error of one row exactly
    expected = errors > at
    assert expected.sum() == 9
    predictor = Predictor(model, TabularInputs(("a", "b", "c")), scaler, Threshold(at, "fpr"))
    np.testing.assert_array_equal(predictor.score_frame(frame).is_anomaly, expected)
    evaluation = evaluate_frame(predictor, frame, "id", "label", prefix="eval")
    np.testing.assert_array_equal(evaluation.scores["is_anomaly"], expected)
    assert evaluation.metrics["eval_alert_rate"] == pytest.approx(9 / 30)
    assert detection_metrics(frame["label"], errors, at, "x")["x_alert_rate"] == pytest.approx(0.3)
