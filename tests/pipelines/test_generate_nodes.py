"""The generate pipeline's nodes, called directly (no kedro run)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aeops.bundle import BundleSpec, LoadedBundle
from aeops.data import TabularInputs, fit_scaler
from aeops.models import ModelConfig, build_model
from aeops.pipelines.generate.nodes import generate_synthetic_data
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
