"""The ``train`` pipeline: raw table to a registered MLflow model."""

from __future__ import annotations

from typing import Any

from kedro.pipeline import Node, Pipeline

from aeops.pipelines.train.nodes import (
    choose_anomaly_threshold,
    enforce_validation,
    evaluate_on_test,
    fit_feature_scaler,
    ingest_raw_data,
    log_training_data,
    register_trained_model,
    split_data,
    train_autoencoder,
    validate_raw_data,
)


def create_pipeline(**kwargs: Any) -> Pipeline:
    """Ingest, validate, split and scale, fit, evaluate, log and register."""
    return Pipeline(
        [
            Node(
                func=ingest_raw_data,
                inputs=["raw_data", "params:data"],
                outputs="ingested_data",
                name="ingest_raw_data_node",
            ),
            Node(
                func=validate_raw_data,
                inputs=["ingested_data", "params:data"],
                outputs=["expectation_results", "validation_report", "validation_suite"],
                name="validate_raw_data_node",
            ),
            Node(
                func=enforce_validation,
                inputs=["ingested_data", "expectation_results"],
                outputs="validated_data",
                name="enforce_validation_node",
            ),
            Node(
                func=log_training_data,
                inputs=["validated_data", "params:data"],
                outputs="data_digest",
                name="log_training_data_node",
            ),
            Node(
                func=split_data,
                inputs=["validated_data", "params:data"],
                outputs=["train_frame", "validation_frame", "test_frame"],
                name="split_data_node",
            ),
            Node(
                func=fit_feature_scaler,
                inputs=["train_frame", "validation_suite", "params:data", "params:scaling"],
                outputs=["input_spec", "scaler"],
                name="fit_feature_scaler_node",
            ),
            Node(
                func=train_autoencoder,
                inputs=[
                    "train_frame",
                    "validation_frame",
                    "input_spec",
                    "scaler",
                    "params:model",
                    "params:training",
                    "params:data",
                ],
                outputs=["trained_model", "training_history", "training_curves_plot"],
                name="train_autoencoder_node",
            ),
            Node(
                func=choose_anomaly_threshold,
                inputs=[
                    "trained_model",
                    "input_spec",
                    "scaler",
                    "validation_frame",
                    "params:threshold",
                    "params:data",
                ],
                outputs="anomaly_threshold",
                name="choose_anomaly_threshold_node",
            ),
            Node(
                func=evaluate_on_test,
                inputs=[
                    "trained_model",
                    "input_spec",
                    "scaler",
                    "anomaly_threshold",
                    "test_frame",
                    "params:data",
                ],
                outputs=[
                    "evaluation_metrics",
                    "test_scores",
                    "feature_errors",
                    "evaluation_plots",
                ],
                name="evaluate_on_test_node",
            ),
            Node(
                func=register_trained_model,
                inputs=[
                    "trained_model",
                    "input_spec",
                    "scaler",
                    "anomaly_threshold",
                    "validation_suite",
                    "evaluation_metrics",
                    "validated_data",
                    "data_digest",
                    "test_frame",
                    "params:registry",
                    "params:data",
                ],
                outputs="registration",
                name="register_trained_model_node",
            ),
        ]
    )
