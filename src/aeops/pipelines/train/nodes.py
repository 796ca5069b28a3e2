"""Nodes of the ``train`` pipeline: parameters in, one library call, values out."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from aeops.data import (
    DataConfig,
    FittedScaler,
    ScalingConfig,
    fit_scaler,
    ingest,
    resolve_feature_columns,
    split_frame,
)
from aeops.models import Autoencoder, ModelConfig, build_model, resolve_architecture
from aeops.pipelines._params import parse_params
from aeops.scoring import Predictor, Threshold, ThresholdConfig, choose_threshold, feature_matrix
from aeops.scoring import detection_metrics as _detection_metrics
from aeops.scoring.plots import error_histogram, roc_figure, training_curves
from aeops.serving import BundleSpec, RegistryConfig, frame_digest, register_bundle
from aeops.training import TrainingConfig, fit, seed_everything
from aeops.validation import ValidationReport, build_suite, suite_to_dict, validate_frame

logger = logging.getLogger(__name__)


def ingest_raw_data(raw_data: pd.DataFrame, data: dict[str, Any]) -> pd.DataFrame:
    """Return the raw table with its id column first (created when absent)."""
    frame = ingest(raw_data, parse_params(DataConfig, data, "data"))
    frame.attrs["source"] = raw_data.attrs.get("source", "raw_data")
    return frame


def validate_raw_data(
    raw_frame: pd.DataFrame, data: dict[str, Any]
) -> tuple[ValidationReport, dict[str, Any], dict[str, Any]]:
    """Validate the raw frame with a Great Expectations suite built from config and schema.

    Returns:
        The report (for the gate), its JSON form (logged to MLflow whether or not it
        passed) and the suite's JSON form (shipped in the bundle).
    """
    config = parse_params(DataConfig, data, "data")
    features = resolve_feature_columns(raw_frame, config)
    suite = build_suite(
        raw_frame,
        id_column=config.id_column,
        feature_columns=features,
        label_column=config.label_column,
        bounds=dict(config.bounds),
        min_rows=config.min_rows,
    )
    report = validate_frame(
        raw_frame,
        suite,
        source=raw_frame.attrs.get("source", "raw_data"),
        id_column=config.id_column,
    )
    return report, report.to_dict(), suite_to_dict(suite)


def enforce_validation(raw_frame: pd.DataFrame, report: ValidationReport) -> pd.DataFrame:
    """Pass the frame on only if it validated; stop the pipeline otherwise.

    Raises:
        DataValidationError: listing every failed expectation.
    """
    report.raise_for_failures()
    return raw_frame


def split_data(
    validated_data: pd.DataFrame, data: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Seeded train/validation/test split, stratified by label when configured."""
    config = parse_params(DataConfig, data, "data")
    return split_frame(validated_data, config.split, config.label_column)


def fit_feature_scaler(
    train_frame: pd.DataFrame, data: dict[str, Any], scaling: dict[str, Any]
) -> FittedScaler:
    """Fit the scaler on the training split's feature columns only."""
    config = parse_params(DataConfig, data, "data")
    columns = resolve_feature_columns(train_frame, config)
    values = train_frame[columns].to_numpy(dtype=np.float64)
    method = parse_params(ScalingConfig, scaling, "scaling").method
    return fit_scaler(values, columns, method)


def train_autoencoder(
    train_frame: pd.DataFrame,
    validation_frame: pd.DataFrame,
    scaler: FittedScaler,
    model: dict[str, Any],
    training: dict[str, Any],
    data: dict[str, Any],
) -> tuple[Autoencoder, dict[str, Any], Figure]:
    """Build the configured autoencoder and fit it, early-stopping on validation loss.

    Returns:
        The trained model, its metric history (per-epoch lists and final scalars) for
        MLflow, and the training-curves figure.
    """
    data_config = parse_params(DataConfig, data, "data")
    model_config = parse_params(ModelConfig, model, "model")
    model_config = model_config.model_copy(
        update={"architecture": resolve_architecture(model_config, data_config.kind)}
    )
    training_config = parse_params(TrainingConfig, training, "training")
    train_x = feature_matrix(train_frame, scaler)
    validation_x = feature_matrix(validation_frame, scaler)
    seed_everything(training_config.seed)  # weight initialisation follows the seed too
    autoencoder = build_model(model_config, input_shape=train_x.shape[1:])
    result = fit(autoencoder, train_x, validation_x, training_config)
    history: dict[str, Any] = result.metric_history()
    history.update(
        best_epoch=result.best_epoch,
        best_validation_loss=result.best_validation_loss,
        epochs_trained=len(result.history),
    )
    return autoencoder, history, training_curves(history)


def choose_anomaly_threshold(
    trained_model: Autoencoder,
    scaler: FittedScaler,
    validation_frame: pd.DataFrame,
    threshold: dict[str, Any],
) -> Threshold:
    """Choose the anomaly threshold on validation reconstruction errors."""
    config = parse_params(ThresholdConfig, threshold, "threshold")
    errors = Predictor(model=trained_model, scaler=scaler).reconstruction_errors(validation_frame)
    chosen = choose_threshold(errors, config)
    logger.info("Threshold %s = %.6g", chosen.method, chosen.value)
    return chosen


def evaluate_on_test(
    trained_model: Autoencoder,
    scaler: FittedScaler,
    anomaly_threshold: Threshold,
    test_frame: pd.DataFrame,
    data: dict[str, Any],
) -> tuple[dict[str, float], pd.DataFrame, Figure, Figure]:
    """Score the test split and measure detection against labels when they exist.

    Returns:
        Metrics named by split (``test_auroc``, ...) plus the threshold and its
        diagnostics; per-row test scores (id, ``reconstruction_error``, ``is_anomaly``
        and, with labels, ``label``); the error histogram and the ROC figure.
    """
    config = parse_params(DataConfig, data, "data")
    predictor = Predictor(model=trained_model, scaler=scaler, threshold=anomaly_threshold)
    scores = predictor.score_frame(test_frame)
    errors = scores.reconstruction_error
    metrics: dict[str, float] = {
        "threshold": anomaly_threshold.value,
        **{f"threshold_{k}": v for k, v in anomaly_threshold.diagnostics.items()},
        "test_error_mean": float(errors.mean()),
        "test_alert_rate": float(scores.is_anomaly.mean()),
    }
    test_scores = pd.DataFrame(
        {
            config.id_column: test_frame[config.id_column].to_numpy(),
            "reconstruction_error": errors,
            "is_anomaly": scores.is_anomaly,
        }
    )
    labels = None
    if config.label_column is not None and config.label_column in test_frame.columns:
        labels = test_frame[config.label_column].to_numpy().astype(int)
        test_scores["label"] = labels
        metrics.update(_detection_metrics(labels, errors, anomaly_threshold.value, prefix="test"))
    histogram = error_histogram(errors, anomaly_threshold.value, labels)
    roc = roc_figure(
        labels if labels is not None else np.zeros(len(errors), dtype=int),
        errors,
        metrics.get("test_auroc"),
    )
    for name in ("test_auroc", "test_auprc", "test_f1"):
        if name in metrics:
            logger.info("%s = %.4f", name, metrics[name])
    return metrics, test_scores, histogram, roc


def register_trained_model(
    trained_model: Autoencoder,
    scaler: FittedScaler,
    anomaly_threshold: Threshold,
    validation_suite: dict[str, Any],
    evaluation_metrics: dict[str, float],
    validated_data: pd.DataFrame,
    registry: dict[str, Any],
    data: dict[str, Any],
) -> dict[str, Any]:
    """Log the bundle to the run, register it and set ``champion`` or ``challenger``."""
    registry_config = parse_params(RegistryConfig, registry, "registry")
    data_config = parse_params(DataConfig, data, "data")
    predictor = Predictor(model=trained_model, scaler=scaler, threshold=anomaly_threshold)
    example_columns = [data_config.id_column, *scaler.columns]
    spec = BundleSpec(
        id_column=data_config.id_column,
        data_kind=data_config.kind,
        input_shape=(len(scaler.columns),),
        validation_suite=validation_suite,
    )
    tags = {
        "model_kind": trained_model.config.kind,
        "architecture": str(trained_model.config.architecture),
        "threshold_method": anomaly_threshold.method,
        "data_digest": frame_digest(validated_data),
    }
    # Doubles in the signature: integer-valued features still accept float input.
    example = (
        validated_data[example_columns].head(5).astype(dict.fromkeys(scaler.columns, "float64"))
    )
    registration = register_bundle(
        predictor,
        spec,
        example,
        evaluation_metrics,
        registry_config,
        tags,
    )
    return registration.to_dict()
