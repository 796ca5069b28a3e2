"""The ``impute`` pipeline: a registered model fills a dataset's missing values."""

from __future__ import annotations

from typing import Any

from kedro.pipeline import Node, Pipeline

from aeops.pipelines.impute.nodes import impute_missing_values, load_imputer


def create_pipeline(**kwargs: Any) -> Pipeline:
    """Load the model (``impute.model_uri``), validate ``impute_input`` and fill it."""
    return Pipeline(
        [
            Node(
                func=load_imputer,
                inputs=["params:impute", "params:registry"],
                outputs="imputer_model",
                name="load_imputer_node",
            ),
            Node(
                func=impute_missing_values,
                inputs=["imputer_model", "impute_input", "params:impute"],
                outputs=["imputed_data", "imputation_metrics"],
                name="impute_missing_values_node",
            ),
        ]
    )
