from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from aeops.data import TabularInputs, fit_scaler
from aeops.models import ModelConfig, build_model
from aeops.scoring import (
    InputSchemaError,
    Predictor,
    ThresholdConfig,
    choose_threshold,
    detection_metrics,
)


def test_quantile_threshold_flags_the_expected_share_of_validation_rows() -> None:
    errors = np.arange(1, 101, dtype=float)
    threshold = choose_threshold(errors, ThresholdConfig(quantile=0.9))
    assert threshold.value == pytest.approx(90.1)
    assert threshold.diagnostics["validation_alert_rate"] == pytest.approx(0.10)
    assert threshold.method == "quantile"


def test_threshold_refuses_non_finite_errors() -> None:
    with pytest.raises(ValueError, match="NaN or inf"):
        choose_threshold(np.array([1.0, np.nan]), ThresholdConfig())


def test_detection_metrics_on_a_known_ranking() -> None:
    labels = np.array([0, 0, 0, 1, 0, 1])
    errors = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.9])
    metrics = detection_metrics(labels, errors, threshold=0.45, prefix="test")
    # Of 8 (anomaly, normal) pairs, the anomaly outranks the normal row in 7.
    assert metrics["test_auroc"] == pytest.approx(7 / 8)
    # Average precision: 1/1 at the first anomaly (0.9), 2/3 at the second (0.4).
    assert metrics["test_auprc"] == pytest.approx((1 + 2 / 3) / 2)
    assert metrics["test_precision"] == pytest.approx(0.5)
    assert metrics["test_recall"] == pytest.approx(0.5)
    assert metrics["test_f1"] == pytest.approx(0.5)
    assert metrics["test_alert_rate"] == pytest.approx(2 / 6)
    # k = 2 anomalies; the two highest errors are 0.9 (anomaly) and 0.5 (normal).
    assert metrics["test_precision_at_k"] == pytest.approx(0.5)


def test_precision_at_k_does_not_depend_on_the_order_of_tied_rows() -> None:
    errors = np.array([0.9, 0.5, 0.5, 0.5, 0.5, 0.1])
    first = np.array([1, 1, 0, 0, 0, 0])  # k = 2: 0.9 is an anomaly; one slot, 4 tied rows
    last = np.array([1, 0, 0, 0, 1, 0])
    for labels in (first, last):
        metrics = detection_metrics(labels, errors, threshold=0.45, prefix="t")
        # One sure hit, plus the tied group's 1 anomaly in 4 for the one slot left.
        assert metrics["t_precision_at_k"] == pytest.approx((1 + 1 / 4) / 2)
    constant = detection_metrics(np.array([0, 0, 0, 0, 1, 1]), np.ones(6), 0.5, "t")
    assert constant["t_precision_at_k"] == pytest.approx(2 / 6)  # the base rate


def test_metrics_undefined_on_the_rows_are_left_out_not_logged_as_zero() -> None:
    no_anomalies = detection_metrics(np.zeros(4), np.arange(4.0), 2.5, "test")
    # One row flagged, and it is a false alarm: precision 0 is a fact; recall is 0/0.
    assert no_anomalies == {"test_alert_rate": 0.25, "test_precision": 0.0}
    nothing_flagged = detection_metrics(np.array([0, 1, 0, 1]), np.arange(4.0), 9.0, "test")
    # Every anomaly missed; no alert is a hit, so precision compares as the worst.
    assert nothing_flagged["test_precision"] == 0.0
    assert (nothing_flagged["test_recall"], nothing_flagged["test_f1"]) == (0.0, 0.0)
    all_anomalies = detection_metrics(np.ones(4), np.arange(4.0), 2.5, "test")
    assert all_anomalies == {
        "test_alert_rate": 0.25,
        "test_precision": 1.0,
        "test_recall": 0.25,
        "test_f1": pytest.approx(0.4),
    }


def _predictor() -> Predictor:
    torch.manual_seed(0)
    model = build_model(ModelConfig(architecture="mlp", latent_dim=2, hidden_dims=(4,)), (3,))
    values = np.random.default_rng(0).normal(size=(30, 3))
    scaler = fit_scaler(values, ["a", "b", "c"], "standard")
    return Predictor(
        model=model, inputs=TabularInputs(("a", "b", "c")), scaler=scaler, batch_size=7
    )


def test_predictor_scores_raw_rows_in_batches_in_input_order() -> None:
    predictor = _predictor()
    frame = pd.DataFrame(np.random.default_rng(1).normal(size=(20, 3)), columns=["c", "a", "b"])
    whole = predictor.reconstruction_errors(frame)
    one_by_one = np.concatenate(
        [predictor.reconstruction_errors(frame.iloc[[i]]) for i in range(20)]
    )
    np.testing.assert_allclose(whole, one_by_one, rtol=1e-6)
    reordered = predictor.reconstruction_errors(frame[["a", "b", "c"]])
    np.testing.assert_array_equal(whole, reordered)


@pytest.mark.parametrize(
    ("features", "dtype", "device", "rows"),
    [
        (64, np.float32, "cpu", 8192),  # 2 MiB of samples per call
        (16, np.float32, "cpu", 16384),  # at most 16384 rows
        (3, np.float64, "cpu", 16384),
        (1000, np.float32, "cpu", 4096),  # wide samples keep 4096 rows
        (784, np.float32, "cpu", 4096),
        (3 * 64 * 64, np.float32, "cpu", 640),  # at most 32 MiB: 64 x 64 RGB images
        (3 * 224 * 224, np.float32, "cpu", 64),  # never fewer than 64 rows
        (64, np.float32, "cuda", 4096),  # a GPU keeps its fixed count
    ],
)
def test_default_rows_per_model_call_follow_the_sample_width_on_the_cpu(
    features: int, dtype: type, device: str, rows: int
) -> None:
    predictor = dataclasses.replace(_predictor(), batch_size=None, device=torch.device(device))
    samples = np.broadcast_to(np.zeros(features, dtype), (100_000, features))  # no memory
    assert predictor._batch_rows(samples) == rows
    assert dataclasses.replace(predictor, batch_size=7)._batch_rows(samples) == 7


def test_default_rows_per_call_give_the_same_answers_as_any_other() -> None:
    predictor = dataclasses.replace(_predictor(), batch_size=None)
    frame = pd.DataFrame(np.random.default_rng(4).normal(size=(20_000, 3)), columns=["a", "b", "c"])
    assert predictor._batch_rows(predictor.samples(frame)) == 16384  # 2 calls, 1 padded
    errors = predictor.reconstruction_errors(frame)
    np.testing.assert_array_equal(errors, _predictor().reconstruction_errors(frame))  # 7 rows


def test_predictor_names_missing_and_non_numeric_columns() -> None:
    predictor = _predictor()
    with pytest.raises(InputSchemaError, match=r"missing feature column\(s\) \['c'\]"):
        predictor.reconstruction_errors(pd.DataFrame({"a": [1.0], "b": [1.0]}))
    with pytest.raises(InputSchemaError, match=r"\['b'\] are not numeric"):
        predictor.reconstruction_errors(pd.DataFrame({"a": [1.0], "b": ["x"], "c": [1.0]}))
    # They named only the dtype: the value, and a missing one, are named now.
    texts = pd.DataFrame({"a": [1.0, 2.0], "b": pd.Series([1.5, "1e3"], dtype=object), "c": 1.0})
    with pytest.raises(InputSchemaError, match=r"row position 1 of 'b': '1e3' \(a str\), expected"):
        predictor.reconstruction_errors(texts)
    gaps = pd.DataFrame({"a": [1.0, 2.0], "b": pd.Series([1.5, None], dtype=object), "c": 1.0})
    with pytest.raises(InputSchemaError, match=r"row position 1: a missing value \(None\)"):
        predictor.reconstruction_errors(gaps)
    twice = pd.DataFrame([[1.0, 2.0, 3.0, 4.0]], columns=["a", "b", "b", "c"])
    with pytest.raises(InputSchemaError, match=r"more than one column named 'b'"):
        predictor.reconstruction_errors(twice)


def test_predictor_refuses_nan_and_inf_naming_the_column() -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [1.0, np.inf], "c": [np.nan, 1.0]})
    with pytest.raises(
        InputSchemaError, match=r"2 non-finite .* first at row position 0, column 'c'"
    ):
        _predictor().reconstruction_errors(frame)


def test_score_frame_needs_a_threshold() -> None:
    with pytest.raises(ValueError, match="no anomaly threshold"):
        _predictor().score_frame(pd.DataFrame({"a": [1.0], "b": [1.0], "c": [1.0]}))


@pytest.mark.parametrize("kind", ["vanilla", "sparse", "denoising", "vae"])
def test_embeddings_alone_are_the_bits_of_embeddings_with_scores(kind: str) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind=kind, architecture="mlp", latent_dim=2), (3,))
    values = np.random.default_rng(0).normal(size=(300, 3))
    predictor = Predictor(
        model=model,
        inputs=TabularInputs(("a", "b", "c")),
        scaler=fit_scaler(values, ["a", "b", "c"], "standard"),
        batch_size=128,
    )
    samples = predictor.samples(pd.DataFrame(values, columns=["a", "b", "c"]))
    np.testing.assert_array_equal(
        predictor.embed_samples(samples), predictor.encode_samples(samples)[0]
    )


def test_a_row_gets_the_same_bits_in_a_small_batch_and_in_a_large_one() -> None:
    torch.manual_seed(0)
    columns = [f"x{i}" for i in range(16)]
    model = build_model(ModelConfig(architecture="mlp", latent_dim=4), (16,))
    values = np.random.default_rng(2).normal(size=(5000, 16))
    predictor = Predictor(
        model=model,
        inputs=TabularInputs(tuple(columns)),
        scaler=fit_scaler(values, columns, "robust"),
    )
    frame = pd.DataFrame(values, columns=columns)
    whole = predictor.embeddings(frame)
    for rows in (slice(0, 4), slice(100, 112), slice(4000, 4600)):
        np.testing.assert_array_equal(predictor.embeddings(frame.iloc[rows]), whole[rows])


@pytest.mark.parametrize("rows", [0, 1, 200, 1000])
def test_row_scores_batch_by_batch_are_the_bits_of_the_whole_input_s(
    rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(0)
    columns = [f"x{i}" for i in range(16)]
    model = build_model(ModelConfig(architecture="mlp", latent_dim=4), (16,))
    values = np.random.default_rng(2).normal(scale=5, size=(1000, 16))
    predictor = Predictor(
        model, TabularInputs(tuple(columns)), fit_scaler(values, columns, "robust"), batch_size=64
    )
    samples = predictor.samples(pd.DataFrame(values[:rows], columns=columns))
    embeddings, elementwise = predictor.encode_samples(samples)
    expected = predictor.inputs.row_scores(rows, embeddings, elementwise)
    # Each batch's element scores become row scores at once: the whole input's are
    # never made.
    monkeypatch.setattr(Predictor, "encode_samples", None)
    got = predictor.score_samples(samples, rows)
    for answer, reference in zip(got, expected, strict=True):
        assert answer.dtype == reference.dtype
        np.testing.assert_array_equal(answer, reference)


@pytest.mark.parametrize("anomaly_score", ["reconstruction", "elbo"])
def test_diagnose_gives_each_value_its_reconstruction_error_apart_from_the_score(
    anomaly_score: str,
) -> None:
    torch.manual_seed(0)
    config = ModelConfig(kind="vae", architecture="mlp", latent_dim=2, anomaly_score=anomaly_score)
    model = build_model(config, (3,))
    values = np.random.default_rng(0).normal(size=(300, 3))
    predictor = Predictor(
        model, TabularInputs(("a", "b", "c")), fit_scaler(values, ["a", "b", "c"], "standard")
    )
    frame = pd.DataFrame(values, columns=["a", "b", "c"])
    embeddings, scores, value_errors = predictor.diagnose(frame)
    np.testing.assert_array_equal(embeddings, predictor.embeddings(frame))
    np.testing.assert_array_equal(scores, predictor.reconstruction_errors(frame))
    gap = scores - value_errors.mean(axis=1)  # the KL share, which no value owns
    if anomaly_score == "elbo":
        assert bool((gap > 1e-6).all())
    else:
        np.testing.assert_allclose(gap, 0.0, atol=1e-12)
