"""The ``score`` pipeline."""

from __future__ import annotations

from typing import Any

from kedro.pipeline import Node, Pipeline

from aeops.pipelines.score.nodes import plan_scores


def create_pipeline(**kwargs: Any) -> Pipeline:
    """Plan the job; saving it to ``scores`` streams the input through the model."""
    return Pipeline(
        [
            Node(
                func=plan_scores,
                inputs=["score_input", "params:score", "params:registry"],
                outputs="scores",
                name="score_dataset_node",
            )
        ]
    )
