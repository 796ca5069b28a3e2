"""The ``sweep`` pipeline: ``train`` with a hyperparameter search in place of one fit."""

from __future__ import annotations

from typing import Any

from kedro.pipeline import Node, Pipeline

from aeops.pipelines.sweep.nodes import sweep_hyperparameters
from aeops.pipelines.train import create_pipeline as create_train_pipeline

_REPLACED = "train_autoencoder_node"


def create_pipeline(**kwargs: Any) -> Pipeline:
    """Every ``train`` node, with ``train_autoencoder_node`` replaced by the sweep.

    The sweep writes the same ``trained_model``, ``training_history`` and
    ``training_curves_plot`` as the fit it replaces, so thresholding, evaluation and
    registration run unchanged on the best trial's model.
    """
    train = create_train_pipeline()
    (fit,) = [node for node in train.nodes if node.name == _REPLACED]
    sweep = Node(
        func=sweep_hyperparameters,
        inputs=[*fit.inputs, "params:sweep"],
        outputs=[*fit.outputs, "sweep_trials"],
        name="sweep_hyperparameters_node",
    )
    return Pipeline([*(node for node in train.nodes if node is not fit), sweep])
