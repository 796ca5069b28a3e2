"""Evaluation figures; callers save them (the catalog logs them to MLflow)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
from matplotlib import pyplot as plt
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve


def error_histogram(
    errors: np.ndarray, threshold: float, labels: np.ndarray | None = None
) -> Figure:
    """Histogram of reconstruction errors (normal against anomalous) with the threshold."""
    figure, axis = plt.subplots(figsize=(7, 4))
    positive = np.asarray(errors)[np.asarray(errors) > 0]
    low = max(positive.min() if positive.size else 1e-6, 1e-12)
    bins = np.geomspace(low, max(np.max(errors), threshold, low * 10), 50).tolist()
    if labels is None:
        axis.hist(errors, bins=bins, color="tab:blue", alpha=0.8, label="all rows")
    else:
        labels = np.asarray(labels).astype(bool)
        axis.hist(errors[~labels], bins=bins, color="tab:blue", alpha=0.6, label="normal")
        axis.hist(errors[labels], bins=bins, color="tab:red", alpha=0.6, label="anomaly")
    axis.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.4g}")
    axis.set_xscale("log")
    axis.set_xlabel("reconstruction error (log scale)")
    axis.set_ylabel("rows")
    axis.set_title("Test reconstruction errors")
    axis.legend()
    figure.tight_layout()
    return figure


def roc_figure(labels: np.ndarray, errors: np.ndarray, auroc: float | None) -> Figure:
    """ROC curve of errors as anomaly scores; a note instead when labels are one class."""
    figure, axis = plt.subplots(figsize=(5, 5))
    if auroc is None:
        axis.text(0.5, 0.5, "ROC undefined: labels hold one class", ha="center")
    else:
        fpr, tpr, _ = roc_curve(labels, errors)
        axis.plot(fpr, tpr, color="tab:red", label=f"AUROC {auroc:.3f}")
        axis.legend(loc="lower right")
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":")
    axis.set_xlabel("false positive rate")
    axis.set_ylabel("true positive rate")
    axis.set_title("Test ROC")
    figure.tight_layout()
    return figure


def training_curves(history: dict[str, list[float]]) -> Figure:
    """Train and validation loss per epoch."""
    figure, axis = plt.subplots(figsize=(7, 4))
    for name in ("train_loss", "validation_loss"):
        values = history.get(name, [])
        axis.plot(range(1, len(values) + 1), values, label=name)
    axis.set_yscale("log")
    axis.set_xlabel("epoch")
    axis.set_ylabel("loss")
    axis.set_title("Training curves")
    axis.legend()
    figure.tight_layout()
    return figure
