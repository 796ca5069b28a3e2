"""Evaluating a predictor on a labelled (or unlabelled) frame: metrics, scores, figures.

The ``train`` pipeline evaluates on its test split and ``evaluate`` re-evaluates a
registered model on any dataset; both call :func:`evaluate_frame`, so their numbers
and figures mean the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from aeops.data import ImageInputs, WindowInputs
from aeops.scoring import plots
from aeops.scoring._metrics import detection_metrics
from aeops.scoring._predictor import Predictor
from aeops.scoring._threshold import Threshold


@dataclass(frozen=True)
class Evaluation:
    """What one evaluation produced.

    ``figures`` are keyed by file name (``error_histogram.png``, ...), ready for a
    folder of plots.
    """

    metrics: dict[str, float]
    scores: pd.DataFrame
    feature_errors: pd.DataFrame
    figures: dict[str, Figure]


def feature_error_table(
    names: list[str], value_errors: np.ndarray, labels: np.ndarray | None
) -> pd.DataFrame:
    """Mean error per feature (overall, and on normal and anomalous rows with labels),
    sorted so that the features that drive anomalies come first.

    ``lift`` is the anomalous rows' mean error over the normal rows': how much more a
    feature is off on anomalies. ``share_of_error`` is the feature's part of all error.
    """
    totals = value_errors.sum(axis=0)
    table = pd.DataFrame(
        {
            "feature": names,
            "mean_error": value_errors.mean(axis=0) if len(value_errors) else np.nan,
            "share_of_error": totals / max(float(totals.sum()), 1e-300),
        }
    )
    sort_by = "mean_error"
    if labels is not None and 0 < labels.sum() < len(labels):
        anomalous = labels.astype(bool)
        table["mean_error_normal"] = value_errors[~anomalous].mean(axis=0)
        table["mean_error_anomaly"] = value_errors[anomalous].mean(axis=0)
        table["lift"] = table.mean_error_anomaly / table.mean_error_normal.clip(lower=1e-12)
        sort_by = "mean_error_anomaly"
    return table.sort_values(sort_by, ascending=False, kind="stable").reset_index(drop=True)


def _value_names(predictor: Predictor) -> list[str]:
    inputs = predictor.inputs
    if isinstance(inputs, ImageInputs):
        channels, height, width = inputs.shape
        return [
            f"c{c}_y{y}_x{x}" for c in range(channels) for y in range(height) for x in range(width)
        ]
    return list(inputs.columns)  # type: ignore[attr-defined]


def _threshold_of(predictor: Predictor) -> Threshold:
    if predictor.threshold is None:
        raise ValueError(
            "this predictor has no anomaly threshold; choose one on validation rows: "
            "predictor.threshold = choose_threshold(predictor.reconstruction_errors("
            "validation_frame), ThresholdConfig())"
        )
    return predictor.threshold


def _labels(frame: pd.DataFrame, label_column: str | None) -> np.ndarray | None:
    if label_column is None or label_column not in frame.columns:
        return None
    return frame[label_column].to_numpy().astype(int)


def _metrics(
    threshold: Threshold, errors: np.ndarray, labels: np.ndarray | None, prefix: str
) -> dict[str, float]:
    flagged = errors > threshold.value
    metrics: dict[str, float] = {
        "threshold": threshold.value,
        **{f"threshold_{k}": v for k, v in threshold.diagnostics.items()},
        f"{prefix}_error_mean": float(errors.mean()) if errors.size else float("nan"),
        f"{prefix}_alert_rate": float(flagged.mean()) if errors.size else float("nan"),
    }
    if labels is not None:
        metrics.update(detection_metrics(labels, errors, threshold.value, prefix=prefix))
    return metrics


def score_metrics(
    predictor: Predictor,
    frame: pd.DataFrame,
    label_column: str | None,
    prefix: str = "test",
    rows: np.ndarray | None = None,
) -> dict[str, float]:
    """The metrics :func:`evaluate_frame` gives, without its scores table and figures:
    what a champion is compared on, whichever ``compare_metric`` is chosen.

    Args:
        rows: a boolean mask of the rows the metrics are taken over; the whole frame
            is scored all the same (a series window keeps the steps before it).

    Raises:
        InputSchemaError: if ``frame`` does not have the model's inputs.
        ValueError: if the predictor has no threshold.
    """
    threshold = _threshold_of(predictor)
    errors = predictor.reconstruction_errors(frame)
    labels = _labels(frame, label_column)
    if rows is not None:
        errors = errors[rows]
        labels = None if labels is None else labels[rows]
    return _metrics(threshold, errors, labels, prefix)


def row_hashes(
    predictor: Predictor, frame: pd.DataFrame, timestamp_column: str | None = None
) -> np.ndarray:
    """A 64-bit hash of each row's content as ``predictor`` reads it.

    The content is the row's model inputs as float64 (so an id's or a column's dtype
    does not matter, and int 3 and float 3.0 agree), and for a series the step's
    timestamp too (in ns; two equal readings at other times are other rows). Ids are
    left out: files without an id column get row numbers, which name positions, not
    rows. Which test rows a champion had trained on is decided on these.

    Raises:
        InputSchemaError: if ``frame`` does not have the predictor's inputs.
    """
    values = predictor.inputs.raw_values(frame)  # pandas hashes -0.0 as 0.0
    columns: dict[str, np.ndarray] = {str(i): values[:, i] for i in range(values.shape[1])}
    if timestamp_column is not None and timestamp_column in frame.columns:
        stamps = frame[timestamp_column]
        if pd.api.types.is_datetime64_any_dtype(stamps):
            columns["timestamp"] = pd.DatetimeIndex(stamps).as_unit("ns").asi8
        else:
            columns["timestamp"] = stamps.to_numpy(dtype=np.float64)
    content = pd.DataFrame(columns, copy=False)
    return pd.util.hash_pandas_object(content, index=False).to_numpy(dtype=np.uint64)


def evaluate_frame(
    predictor: Predictor,
    frame: pd.DataFrame,
    id_column: str,
    label_column: str | None,
    prefix: str = "test",
    timestamp_column: str | None = None,
) -> Evaluation:
    """Score ``frame`` and describe how well the scores separate its labels.

    Args:
        predictor: a model with its scaler and threshold.
        frame: raw rows as the model takes them; its labels are used only here.
        id_column: kept in the per-row scores.
        label_column: 1 for anomalies; metrics that need labels are left out without it.
        prefix: the name of the data in every metric (``test_auroc``, ...).
        timestamp_column: the x axis of the series plot, when the frame has it.

    Returns:
        Metrics (threshold diagnostics included), per-row scores, the per-feature error
        table and the figures: error histogram, ROC and PR (with labels), the
        embeddings' PCA, the feature errors, and image reconstructions or the series
        with its scores.

    Raises:
        InputSchemaError: if ``frame`` does not have the model's inputs.
        ValueError: if the predictor has no threshold.
    """
    threshold = _threshold_of(predictor)
    embeddings, errors, value_errors = predictor.diagnose(frame)
    flagged = errors > threshold.value
    labels = _labels(frame, label_column)
    metrics = _metrics(threshold, errors, labels, prefix)
    scores = pd.DataFrame(
        {
            id_column: frame[id_column].to_numpy(),
            "reconstruction_error": errors,
            "is_anomaly": flagged,
        }
    )
    if labels is not None:
        scores["label"] = labels

    table = feature_error_table(_value_names(predictor), value_errors, labels)
    histogram = plots.error_histogram(errors, threshold.value, labels, predictor.model.score_name)
    figures = {"error_histogram.png": histogram}
    if labels is not None:  # without labels there is no curve to draw
        figures["roc_curve.png"] = plots.roc_figure(labels, errors, metrics.get(f"{prefix}_auroc"))
        figures["pr_curve.png"] = plots.pr_figure(labels, errors, metrics.get(f"{prefix}_auprc"))
    figures["embeddings_pca.png"] = plots.embedding_projection(embeddings, labels, flagged)
    figures["feature_errors.png"] = plots.feature_error_bars(table)
    inputs = predictor.inputs
    if isinstance(inputs, ImageInputs):
        images = inputs.raw_values(frame).reshape(-1, *inputs.shape)
        rebuilt = predictor.reconstructions(frame).reshape(-1, *inputs.shape)
        figures["image_reconstructions.png"] = plots.image_grid(images, rebuilt, errors)
    elif isinstance(inputs, WindowInputs):
        steps = (
            frame[timestamp_column].to_numpy()
            if timestamp_column is not None and timestamp_column in frame.columns
            else np.arange(len(frame))
        )
        figures["series_scores.png"] = plots.series_scores(
            steps, inputs.raw_values(frame), list(inputs.columns), errors, threshold.value, labels
        )
    return Evaluation(metrics=metrics, scores=scores, feature_errors=table, figures=figures)
