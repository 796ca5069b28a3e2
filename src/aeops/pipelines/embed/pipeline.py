"""The ``embed`` pipeline."""

from __future__ import annotations

from typing import Any

from kedro.pipeline import Node, Pipeline

from aeops.pipelines.embed.nodes import plan_embeddings


def create_pipeline(**kwargs: Any) -> Pipeline:
    """Plan the job; saving it to ``embeddings`` streams the input through the model."""
    return Pipeline(
        [
            Node(
                func=plan_embeddings,
                inputs=["embed_input", "params:embed", "params:registry"],
                outputs="embeddings",
                name="embed_dataset_node",
            )
        ]
    )
