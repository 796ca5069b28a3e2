"""Nodes of the ``train`` pipeline: parameters in, one library call, values out."""

from __future__ import annotations

import logging
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from aeops.data import (
    DataConfig,
    FittedScaler,
    ImageInputs,
    InputSpec,
    ScalingConfig,
    WindowInputs,
    fit_input_scaler,
    ingest,
    make_input_spec,
    split_by_kind,
)
from aeops.models import Autoencoder, ModelConfig, build_model, resolve_architecture
from aeops.pipelines._params import parse_params
from aeops.scoring import Predictor, Threshold, ThresholdConfig, choose_threshold
from aeops.scoring.evaluation import evaluate_frame, row_hashes
from aeops.scoring.plots import training_curves
from aeops.serving import (
    BundleSpec,
    RegistryConfig,
    frame_digest,
    log_dataset_input,
    log_resolved_settings,
)
from aeops.serving.pending import PendingRegistration
from aeops.training import TrainingConfig, fit
from aeops.validation import (
    ValidationReport,
    build_suite,
    inferred_shape_problem,
    suite_json_roles,
    suite_to_dict,
    validate_frame,
    validation_view,
)

logger = logging.getLogger(__name__)


def ingest_raw_data(raw_data: pd.DataFrame, data: dict[str, Any]) -> pd.DataFrame:
    """Return the raw table with its id column first (created when absent)."""
    frame = ingest(raw_data, parse_params(DataConfig, data, "data"))
    frame.attrs["source"] = raw_data.attrs.get("source", "raw_data")
    return frame


def validate_raw_data(
    ingested_data: pd.DataFrame, data: dict[str, Any]
) -> tuple[ValidationReport, dict[str, Any], dict[str, Any]]:
    """Validate the raw frame with a Great Expectations suite built from config and schema.

    Images and series are checked through derived columns (image shape and pixel
    range; time steps between readings), see :func:`aeops.validation.validation_view`.

    Returns:
        The report (for the gate), its JSON form (logged to MLflow whether or not it
        passed) and the suite's JSON form (shipped in the bundle).
    """
    config = parse_params(DataConfig, data, "data")
    view = validation_view(ingested_data, config)
    if problem := inferred_shape_problem(view, config):
        logger.warning("%s", problem)
    label = config.label_column
    suite = build_suite(
        view.frame,
        id_column=config.id_column,
        feature_columns=view.feature_columns,
        label_column=label,
        bounds=view.bounds,
        min_rows=view.min_rows,
    )
    source = ingested_data.attrs.get("source", "raw_data")
    report = validate_frame(view.frame, suite, source=source, id_column=config.id_column)
    return report, report.to_dict(), suite_to_dict(suite)


def enforce_validation(ingested_data: pd.DataFrame, report: ValidationReport) -> pd.DataFrame:
    """Pass the frame on only if it validated; stop the pipeline otherwise.

    Raises:
        DataValidationError: listing every failed expectation.
    """
    report.raise_for_failures()
    return ingested_data


def log_training_data(validated_data: pd.DataFrame, data: dict[str, Any]) -> str:
    """Record the validated table as the run's training input (source, schema, digest).

    Returns:
        The data digest, which the registered version is tagged with.
    """
    label = parse_params(DataConfig, data, "data").label_column
    return log_dataset_input(
        validated_data, name="raw_data", context="training", label_column=label
    )


def split_data(
    validated_data: pd.DataFrame, data: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Seeded split, stratified by label for rows and images; by time for series."""
    return split_by_kind(validated_data, parse_params(DataConfig, data, "data"))


def fit_feature_scaler(
    train_frame: pd.DataFrame,
    validation_suite: dict[str, Any],
    data: dict[str, Any],
    scaling: dict[str, Any],
) -> tuple[InputSpec, FittedScaler]:
    """Resolve how rows become samples, and fit the scaler on the training split only.

    The features are the ones validation chose and checked on the whole table (the
    suite records them): chosen again on the training split alone, a text column
    that is mostly numbers could pass or miss the share that makes it a feature.
    """
    config = parse_params(DataConfig, data, "data")
    if config.kind != "image" and not config.feature_columns:
        # The suite's features also hold derived checks (a series' time steps).
        validated = suite_json_roles(validation_suite).get("feature_columns") or []
        chosen = tuple(column for column in validated if column in train_frame.columns)
        config = config.model_copy(update={"feature_columns": chosen or None})
    spec = make_input_spec(train_frame, config)
    method = parse_params(ScalingConfig, scaling, "scaling").method
    return spec, fit_input_scaler(spec, train_frame, method)


def train_autoencoder(
    train_frame: pd.DataFrame,
    validation_frame: pd.DataFrame,
    input_spec: InputSpec,
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
    autoencoder, history = fit_autoencoder(
        input_spec.samples(train_frame, scaler),
        input_spec.samples(validation_frame, scaler),
        input_spec,
        model,
        training,
        data,
    )
    return autoencoder, history, training_curves(history)


def fit_autoencoder(
    train_x: np.ndarray,
    validation_x: np.ndarray,
    input_spec: InputSpec,
    model: dict[str, Any],
    training: dict[str, Any],
    data: dict[str, Any],
) -> tuple[Autoencoder, dict[str, Any]]:
    """Build the autoencoder the ``model`` block asks for and fit it on scaled samples.

    Returns:
        The trained model and its metric history (per-epoch lists and final scalars).

    Raises:
        ParameterError: naming each invalid key of ``model`` or ``training``.
        TrainingDivergedError: if the loss became NaN or inf.
    """
    data_config = parse_params(DataConfig, data, "data")
    model_config = parse_params(ModelConfig, model, "model")
    model_config = model_config.model_copy(
        update={"architecture": resolve_architecture(model_config, data_config.kind)}
    )
    training_config = parse_params(TrainingConfig, training, "training")
    log_resolved_settings(
        {
            "model": model_config.model_dump(mode="json"),
            "training": training_config.model_dump(mode="json"),
        }
    )
    autoencoder = build_model(
        model_config, input_shape=input_spec.sample_shape, seed=training_config.seed
    )
    result = fit(autoencoder, train_x, validation_x, training_config)
    history: dict[str, Any] = result.metric_history()
    history.update(
        best_epoch=result.best_epoch,
        best_validation_loss=result.best_validation_loss,
        epochs_trained=len(result.history),
    )
    if result.resumed_from_epoch is not None:  # its earlier epochs ran in another run
        history["resumed_from_epoch"] = result.resumed_from_epoch
    return autoencoder, history


def choose_anomaly_threshold(
    trained_model: Autoencoder,
    input_spec: InputSpec,
    scaler: FittedScaler,
    validation_frame: pd.DataFrame,
    threshold: dict[str, Any],
    data: dict[str, Any],
) -> Threshold:
    """Choose the anomaly threshold on validation reconstruction errors (and labels,
    for the methods that use them); test data never enters."""
    config = parse_params(ThresholdConfig, threshold, "threshold")
    label = parse_params(DataConfig, data, "data").label_column
    labels = validation_frame[label].to_numpy() if label in validation_frame else None
    predictor = Predictor(model=trained_model, inputs=input_spec, scaler=scaler)
    errors = predictor.reconstruction_errors(validation_frame)
    chosen = choose_threshold(errors, config, labels)
    logger.info("Threshold %s = %.6g", chosen.method, chosen.value)
    return chosen


def evaluate_on_test(
    trained_model: Autoencoder,
    input_spec: InputSpec,
    scaler: FittedScaler,
    anomaly_threshold: Threshold,
    test_frame: pd.DataFrame,
    data: dict[str, Any],
) -> tuple[dict[str, float], pd.DataFrame, pd.DataFrame, dict[str, Figure]]:
    """Score the test split and measure detection against labels when they exist.

    Returns:
        Metrics named by split (``test_auroc``, ...) plus the threshold and its
        diagnostics; per-row test scores (id, ``reconstruction_error``, ``is_anomaly``
        and, with labels, ``label``); the per-feature error table; the evaluation
        figures by file name.
    """
    config = parse_params(DataConfig, data, "data")
    predictor = Predictor(
        model=trained_model, inputs=input_spec, scaler=scaler, threshold=anomaly_threshold
    )
    evaluation = evaluate_frame(
        predictor,
        test_frame,
        id_column=config.id_column,
        label_column=config.label_column,
        prefix="test",
        timestamp_column=config.timestamp_column,
    )
    for name in ("test_auroc", "test_auprc", "test_f1"):
        if name in evaluation.metrics:
            logger.info("%s = %.4f", name, evaluation.metrics[name])
    return evaluation.metrics, evaluation.scores, evaluation.feature_errors, evaluation.figures


def _input_example(frame: pd.DataFrame, spec: InputSpec, config: DataConfig) -> pd.DataFrame:
    """A few raw rows as the bundle takes them: ids, float features as doubles (so
    float32 input is accepted too), integer features as they are, flat images.

    Series take enough consecutive steps for one window.
    """
    if isinstance(spec, ImageInputs):
        flat = [np.asarray(cell, dtype=np.float64).reshape(-1) for cell in frame[spec.column]]
        return pd.DataFrame(
            {config.id_column: frame[config.id_column].to_numpy()[:3], spec.column: flat[:3]}
        )
    columns = list(spec.columns)  # type: ignore[attr-defined]
    n_rows = spec.length if isinstance(spec, WindowInputs) else 5
    keep = [config.id_column, *columns]
    if isinstance(spec, WindowInputs) and config.timestamp_column in frame.columns:
        keep.insert(1, config.timestamp_column)
    floats = [c for c in columns if pd.api.types.is_float_dtype(frame[c])]
    return frame[keep].head(n_rows).astype(dict.fromkeys(floats, "float64"))


def registration_request(
    trained_model: Autoencoder,
    input_spec: InputSpec,
    scaler: FittedScaler,
    anomaly_threshold: Threshold,
    validation_suite: dict[str, Any],
    evaluation_metrics: dict[str, float],
    validated_data: pd.DataFrame,
    data_digest: str,
    test_frame: pd.DataFrame,
    registry: dict[str, Any],
    data: dict[str, Any],
) -> PendingRegistration:
    """Everything registering this run's model needs: the bundle, its input example,
    metrics and tags (also what is kept on disk if the tracking server goes away)."""
    data_config = parse_params(DataConfig, data, "data")
    if isinstance(input_spec, ImageInputs):  # scoring checks images against this shape
        data_config = data_config.model_copy(update={"image_shape": input_spec.shape})
    predictor = Predictor(
        model=trained_model, inputs=input_spec, scaler=scaler, threshold=anomaly_threshold
    )
    spec = BundleSpec(
        id_column=data_config.id_column,
        validation_suite=validation_suite,
        data=data_config.model_dump(mode="json"),
    )
    request = PendingRegistration(
        predictor=predictor,
        spec=spec,
        input_example=_input_example(validated_data, input_spec, data_config),
        metrics=evaluation_metrics,
        config=parse_params(RegistryConfig, registry, "registry"),
        tags={
            "model_kind": trained_model.config.kind,
            "architecture": str(trained_model.config.architecture),
            "data_kind": data_config.kind,
            "threshold_method": anomaly_threshold.method,
            "data_digest": data_digest,
        },
        optional_columns=(
            {data_config.timestamp_column} if data_config.kind == "timeseries" else set()
        ),
        evaluation_digest=frame_digest(test_frame),
        training_rows=_training_rows(predictor, spec, validated_data, test_frame),
        evaluation_frame=test_frame,
        label_column=data_config.label_column,
    )
    run = mlflow.active_run()
    if run is not None:
        # One id per run: a version this run left half-way, when its tracking server
        # went away, carries the id of the model kept for later, which then replaces it.
        request.pending_id = run.info.run_id
    return request


def register_trained_model(
    trained_model: Autoencoder,
    input_spec: InputSpec,
    scaler: FittedScaler,
    anomaly_threshold: Threshold,
    validation_suite: dict[str, Any],
    evaluation_metrics: dict[str, float],
    validated_data: pd.DataFrame,
    data_digest: str,
    test_frame: pd.DataFrame,
    registry: dict[str, Any],
    data: dict[str, Any],
) -> dict[str, Any]:
    """Log the bundle to the run, register it and set ``champion`` or ``challenger``.

    The current champion is compared on this run's test split: its logged metrics
    when it was evaluated on the same data, else both models scored here on the test
    rows neither was trained on.
    """
    request = registration_request(
        trained_model,
        input_spec,
        scaler,
        anomaly_threshold,
        validation_suite,
        evaluation_metrics,
        validated_data,
        data_digest,
        test_frame,
        registry,
        data,
    )
    return request.register().to_dict()


def _training_rows(
    predictor: Predictor, spec: BundleSpec, validated: pd.DataFrame, test_frame: pd.DataFrame
) -> np.ndarray:
    """Row hashes of what the model was fitted and tuned on: all but the test split."""
    fitted = validated[~validated[spec.id_column].isin(test_frame[spec.id_column])]
    return np.unique(row_hashes(predictor, fitted, spec.timestamp_column))
