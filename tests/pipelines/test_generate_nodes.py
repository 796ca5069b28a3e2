"""The generate and impute pipelines' nodes, called directly (no kedro run)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import torch

from aeops.bundle import BundleSpec, LoadedBundle
from aeops.data import ImageInputs, TabularInputs, WindowInputs, fit_scaler
from aeops.models import ModelConfig, build_model
from aeops.pipelines.generate.nodes import generate_synthetic_data
from aeops.pipelines.impute.nodes import impute_missing_values
from aeops.scoring import Predictor
from aeops.scoring.generative import GenerationError


def test_generate_refuses_a_model_that_is_not_a_vae_naming_the_uri_to_change() -> None:
    torch.manual_seed(0)
    config = ModelConfig(kind="vanilla", architecture="mlp", latent_dim=2, hidden_dims=(8,))
    model = build_model(config, (4,))
    columns = ["a", "b", "c", "d"]
    scaler = fit_scaler(np.random.default_rng(0).normal(size=(20, 4)), columns, "robust")
    bundle = LoadedBundle(
        Predictor(model, TabularInputs(tuple(columns)), scaler),
        BundleSpec(id_column="id"),
        {"model_uri": "models:/aeops-demo@champion", "model_version": "2"},
    )
    message = (
        r"model.kind='vanilla'.*models:/aeops-demo@champion \(version 2\).*generate\.model_uri="
    )
    with pytest.raises(GenerationError, match=message):
        generate_synthetic_data(bundle, {"num_samples": 4})


def test_impute_warns_of_rows_and_columns_with_no_observed_value(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # They were filled with one row of values, silently.
    torch.manual_seed(0)
    config = ModelConfig(kind="vae", architecture="mlp", latent_dim=2, hidden_dims=(8,))
    columns = ["a", "b", "c", "d"]
    values = np.random.default_rng(0).normal(size=(6, 4))
    scaler = fit_scaler(values, columns, "robust")
    bundle = LoadedBundle(
        Predictor(build_model(config, (4,)), TabularInputs(tuple(columns)), scaler),
        BundleSpec(id_column="id"),
        {"model_uri": "models:/aeops-demo/1"},
    )
    frame = pd.DataFrame(values, columns=columns)
    frame.insert(0, "id", range(10, 16))
    frame["c"] = np.nan
    frame.loc[2, columns] = np.nan
    with caplog.at_level(logging.WARNING, logger="aeops.pipelines.impute.nodes"):
        filled, _ = impute_missing_values(bundle, frame, {"holdout_fraction": 0.0})
    assert not filled[columns].isna().any().any()
    assert "1 row(s) have no observed feature value (ids [12])" in caplog.text
    assert "Column(s) ['c'] have no observed value" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="aeops.pipelines.impute.nodes"):
        impute_missing_values(bundle, frame.assign(c=1.0).drop(index=2), {})
    assert caplog.text == ""  # nothing to warn of


def _tabular_vae() -> LoadedBundle:
    torch.manual_seed(0)
    config = ModelConfig(kind="vae", architecture="mlp", latent_dim=2, hidden_dims=(8,))
    columns = ["a", "b", "c", "d"]
    scaler = fit_scaler(np.random.default_rng(0).normal(size=(6, 4)), columns, "robust")
    return LoadedBundle(
        Predictor(build_model(config, (4,)), TabularInputs(tuple(columns)), scaler),
        BundleSpec(id_column="id"),
        {"model_uri": "models:/aeops-demo/1"},
    )


def test_imputed_rows_keep_the_inputs_column_order(caplog: pytest.LogCaptureFixture) -> None:
    # Ingestion moved the id column first.
    frame = pd.DataFrame(np.random.default_rng(1).normal(size=(6, 4)), columns=list("dcba"))
    frame["note"] = "x"
    frame["id"] = range(6)
    frame.loc[1, "b"] = np.nan
    filled, _ = impute_missing_values(_tabular_vae(), frame, {"holdout_fraction": 0.0})
    assert list(filled.columns) == ["d", "c", "b", "a", "note", "id"]
    assert filled["b"].notna().all()
    no_ids = frame.drop(columns=["id"])
    filled, _ = impute_missing_values(_tabular_vae(), no_ids, {"holdout_fraction": 0.0})
    assert list(filled.columns) == ["id", "d", "c", "b", "a", "note"]  # row numbers, first


def test_imputation_that_stops_before_it_settles_is_warned_of(
    caplog: pytest.LogCaptureFixture,
) -> None:
    frame = pd.DataFrame(np.random.default_rng(1).normal(size=(6, 4)), columns=list("abcd"))
    frame.loc[[1, 3], "b"] = np.nan
    options = {"holdout_fraction": 0.0, "max_iterations": 1, "tolerance": 1e-12}
    with caplog.at_level(logging.WARNING, logger="aeops.pipelines.impute.nodes"):
        impute_missing_values(_tabular_vae(), frame, options)
    assert "stopped at impute.max_iterations=1 before it settled" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="aeops.pipelines.impute.nodes"):
        impute_missing_values(_tabular_vae(), frame, {**options, "max_iterations": 200})
    assert caplog.text == ""


def test_a_series_step_with_no_reading_is_said_to_be_filled_from_its_neighbours(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # It was said to be filled "with the same values", as an empty table row is.
    torch.manual_seed(0)
    config = ModelConfig(kind="vae", architecture="recurrent", latent_dim=2, hidden_dims=(8,))
    columns = ("a", "b")
    values = np.random.default_rng(0).normal(size=(40, 2))
    bundle = LoadedBundle(
        Predictor(
            build_model(config, (8, 2)),
            WindowInputs(columns=columns, length=8, stride=4),
            fit_scaler(values, list(columns), "robust"),
        ),
        BundleSpec(id_column="id", data={"kind": "timeseries", "window": {"length": 8}}),
        {"model_uri": "models:/aeops-demo/1"},
    )
    frame = pd.DataFrame(values, columns=list(columns))
    frame.insert(0, "timestamp", pd.date_range("2026-01-01", periods=40, freq="min"))
    frame.loc[[10, 11], list(columns)] = np.nan
    with caplog.at_level(logging.WARNING, logger="aeops.pipelines.impute.nodes"):
        filled, _ = impute_missing_values(bundle, frame, {"holdout_fraction": 0.0})
    assert "2 row(s) have no observed feature value (ids [10, 11]): each is filled from its" in (
        caplog.text
    )
    assert filled.loc[10, "a"] != filled.loc[11, "a"]


def test_generated_values_are_clipped_into_the_datas_bounds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Draws from the prior's tails gave negative values for columns bounded below by 0.
    bundle = _tabular_vae()
    bounded = LoadedBundle(
        bundle.predictor,
        BundleSpec(id_column="id", data={"bounds": {"a": [0.0, None], "c": [-0.1, 0.1]}}),
        bundle.provenance,
    )
    options = {"num_samples": 200, "temperature": 4.0}
    free, _, free_metrics = generate_synthetic_data(bundle, options)
    assert (free["a"] < 0).any() and (free["c"].abs() > 0.1).any()
    assert free_metrics["generated_clipped"] == 0
    with caplog.at_level(logging.WARNING, logger="aeops.pipelines.generate.nodes"):
        frame, _, metrics = generate_synthetic_data(bounded, options)
    assert frame["a"].min() >= 0 and frame["c"].between(-0.1, 0.1).all()
    outside = int((free["a"] < 0).sum() + (free["c"].abs() > 0.1).sum())
    assert metrics["generated_clipped"] == outside
    assert f"{outside} generated value(s) fell outside data.bounds or" in caplog.text
    for column in ("b", "d"):  # unbounded: as drawn
        np.testing.assert_array_equal(frame[column], free[column])
    kept = free["a"] >= 0
    np.testing.assert_array_equal(frame.loc[kept, "a"], free.loc[kept, "a"])


def test_generated_pixels_are_clipped_into_the_pixel_range() -> None:
    # A VAE trained with the mse loss decoded pixels from -45 to 302 on 0-255 data.
    torch.manual_seed(0)
    config = ModelConfig(
        kind="vae", architecture="conv", latent_dim=2, hidden_dims=(4,), reconstruction_loss="mse"
    )
    pixels = np.random.default_rng(0).uniform(0, 255, size=(6, 64))
    predictor = Predictor(
        build_model(config, (1, 8, 8)),
        ImageInputs(column="image", shape=(1, 8, 8)),
        fit_scaler(pixels.reshape(-1, 1), ["pixel"], "standard"),
    )
    spec = BundleSpec(id_column="id", data={"kind": "image", "pixel_range": [0, 255]})
    options = {"num_samples": 50, "temperature": 20.0}
    free, _, _ = generate_synthetic_data(
        LoadedBundle(predictor, BundleSpec(id_column="id"), {}), options
    )
    drawn = np.stack(free["image"])
    assert drawn.min() < 0 or drawn.max() > 255
    frame, _, metrics = generate_synthetic_data(LoadedBundle(predictor, spec, {}), options)
    clipped = np.stack(frame["image"])
    assert clipped.min() >= 0 and clipped.max() <= 255
    assert metrics["generated_clipped"] == ((drawn < 0) | (drawn > 255)).sum()
    np.testing.assert_array_equal(clipped, drawn.clip(0, 255))
