"""The generate and impute pipelines' nodes, called directly (no kedro run)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import torch

from aeops.bundle import BundleSpec, LoadedBundle
from aeops.data import TabularInputs, fit_scaler
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
