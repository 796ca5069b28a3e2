"""The ``evaluate`` pipeline: a registered model and a dataset to a new evaluation run."""

from __future__ import annotations

from typing import Any

from kedro.pipeline import Node, Pipeline

from aeops.pipelines.evaluate.nodes import evaluate_registered_model, load_model_to_evaluate


def create_pipeline(**kwargs: Any) -> Pipeline:
    """Load the model (``evaluate.model_uri``), validate, score and measure the data."""
    return Pipeline(
        [
            Node(
                func=load_model_to_evaluate,
                inputs=["params:evaluate", "params:registry"],
                outputs="model_to_evaluate",
                name="load_model_to_evaluate_node",
            ),
            Node(
                func=evaluate_registered_model,
                inputs=["model_to_evaluate", "evaluate_input", "params:evaluate"],
                outputs=[
                    "reevaluation_metrics",
                    "reevaluation_scores",
                    "reevaluation_feature_errors",
                    "reevaluation_plots",
                ],
                name="evaluate_registered_model_node",
            ),
        ]
    )
