"""The ``generate`` pipeline: a registered VAE to synthetic data, logged as a run."""

from __future__ import annotations

from typing import Any

from kedro.pipeline import Node, Pipeline

from aeops.pipelines.generate.nodes import generate_synthetic_data, load_generator


def create_pipeline(**kwargs: Any) -> Pipeline:
    """Load the VAE (``generate.model_uri``) and sample from its prior."""
    return Pipeline(
        [
            Node(
                func=load_generator,
                inputs=["params:generate", "params:registry"],
                outputs="generator_model",
                name="load_generator_node",
            ),
            Node(
                func=generate_synthetic_data,
                inputs=["generator_model", "params:generate"],
                outputs=["generated_data", "generation_plots", "generation_metrics"],
                name="generate_synthetic_data_node",
            ),
        ]
    )
