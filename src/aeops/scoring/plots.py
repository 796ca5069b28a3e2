"""Evaluation figures; callers save them (the catalog logs them to MLflow)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

from typing import Any

import numpy as np
import pandas as pd
from matplotlib import pyplot as plt
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve


def error_histogram(
    errors: np.ndarray,
    threshold: float,
    labels: np.ndarray | None = None,
    score_name: str = "reconstruction error",
) -> Figure:
    """Histogram of the anomaly scores (normal against anomalous) with the threshold;
    ``score_name`` says what they are (a VAE's negative ELBO, say)."""
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
    axis.set_xlabel(f"{score_name} (log scale)")
    axis.set_ylabel("rows")
    axis.set_title(f"Test scores: {score_name}")
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


def pr_figure(labels: np.ndarray, errors: np.ndarray, auprc: float | None) -> Figure:
    """Precision-recall curve of errors as anomaly scores, with the base rate."""
    from sklearn.metrics import precision_recall_curve

    figure, axis = plt.subplots(figsize=(5, 5))
    if auprc is None:
        axis.text(0.5, 0.5, "PR undefined: labels hold one class", ha="center")
    else:
        precision, recall, _ = precision_recall_curve(labels, errors)
        axis.plot(recall, precision, color="tab:red", label=f"AUPRC {auprc:.3f}")
        base = float(np.mean(labels))
        axis.axhline(base, color="grey", linestyle=":", label=f"anomaly rate {base:.3f}")
        axis.legend(loc="upper right")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1.02)
    axis.set_xlabel("recall")
    axis.set_ylabel("precision")
    axis.set_title("Test precision-recall")
    figure.tight_layout()
    return figure


def embedding_projection(
    embeddings: np.ndarray, labels: np.ndarray | None, flagged: np.ndarray
) -> Figure:
    """The embeddings' first two principal components, coloured by label (or flag).

    Rows whose embedding is not finite (inputs beyond the model's float32 range) are
    left out, and the title says how many.
    """
    values = np.asarray(embeddings, dtype=np.float64)
    finite = np.isfinite(values).all(axis=1)
    values, flagged = values[finite], np.asarray(flagged)[finite]
    labels = None if labels is None else np.asarray(labels)[finite]
    centred = values - values.mean(axis=0)
    if centred.shape[1] >= 2 and centred.shape[0] >= 2:
        _, singular, components = np.linalg.svd(centred, full_matrices=False)
        points = centred @ components[:2].T
        explained = singular[:2] ** 2 / max(float((singular**2).sum()), 1e-300)
        names = [f"PC{i + 1} ({share:.0%} of variance)" for i, share in enumerate(explained)]
    else:  # one latent unit: plot it against the row order
        points = np.column_stack([centred[:, 0], np.arange(len(centred))])
        names = ["latent 1", "row"]
    colour_by = (
        np.asarray(labels).astype(bool) if labels is not None else np.asarray(flagged, dtype=bool)
    )
    legend = ("normal", "anomaly") if labels is not None else ("not flagged", "flagged")
    figure, axis = plt.subplots(figsize=(6, 5))
    for selected, colour, name in (
        (~colour_by, "tab:blue", legend[0]),
        (colour_by, "tab:red", legend[1]),
    ):
        axis.scatter(points[selected, 0], points[selected, 1], s=8, alpha=0.6, c=colour, label=name)
    axis.set_xlabel(names[0])
    axis.set_ylabel(names[1])
    left_out = int((~finite).sum())
    axis.set_title(
        "Test embeddings (PCA)" + (f", {left_out} non-finite left out" if left_out else "")
    )
    axis.legend()
    figure.tight_layout()
    return figure


def feature_error_bars(table: pd.DataFrame, top: int = 20) -> Figure:
    """The features with the largest mean error on anomalies (or overall), normal beside."""
    shown = table.head(top).iloc[::-1]
    figure, axis = plt.subplots(figsize=(7, 0.3 * len(shown) + 1.5))
    positions = np.arange(len(shown))
    if "mean_error_anomaly" in shown.columns:
        axis.barh(positions + 0.2, shown.mean_error_anomaly, 0.4, color="tab:red", label="anomaly")
        axis.barh(positions - 0.2, shown.mean_error_normal, 0.4, color="tab:blue", label="normal")
        axis.legend(loc="lower right")
    else:
        axis.barh(positions, shown.mean_error, 0.6, color="tab:blue")
    axis.set_yticks(positions, shown.feature.astype(str))
    axis.set_xlabel("mean reconstruction error")
    axis.set_title("Which features drive the errors (test)")
    figure.tight_layout()
    return figure


def image_grid(
    images: np.ndarray, reconstructions: np.ndarray, errors: np.ndarray, per_row: int = 8
) -> Figure:
    """Inputs above their reconstructions: the highest-error test images, then the lowest.

    ``images`` and ``reconstructions`` are (N, C, H, W) in original units; two
    channels are drawn as their mean, and channels beyond the first three not at all.
    """
    order = np.argsort(-errors, kind="stable")
    count = min(per_row, len(order))
    groups = (("highest error", order[:count]), ("lowest error", order[::-1][:count]))
    figure, axes = plt.subplots(4, max(count, 1), figsize=(1.3 * max(count, 1), 6), squeeze=False)
    low = float(min(images.min(initial=0.0), reconstructions.min(initial=0.0)))
    high = float(max(images.max(initial=1.0), reconstructions.max(initial=1.0)))

    def show(axis: Any, image: np.ndarray) -> None:
        axis.imshow((_picture(image) - low) / (high - low or 1.0), cmap="gray", vmin=0, vmax=1)

    for group, (name, indices) in enumerate(groups):
        for column in range(axes.shape[1]):
            top, bottom = axes[2 * group, column], axes[2 * group + 1, column]
            for axis in (top, bottom):
                axis.set_xticks([])
                axis.set_yticks([])
            if column >= len(indices):
                continue
            index = indices[column]
            show(top, images[index])
            show(bottom, reconstructions[index])
            top.set_title(f"{errors[index]:.3g}", fontsize=8)
        axes[2 * group, 0].set_ylabel(f"{name}\ninput", fontsize=8)
        axes[2 * group + 1, 0].set_ylabel("reconstruction", fontsize=8)
    figure.suptitle("Test images and reconstructions (error above each)")
    figure.tight_layout()
    return figure


def series_scores(
    steps: np.ndarray,
    signal: np.ndarray,
    names: list[str],
    errors: np.ndarray,
    threshold: float,
    labels: np.ndarray | None,
    max_signals: int = 3,
) -> Figure:
    """The signal over time above its per-step scores and the threshold; labelled
    anomalous steps shaded."""
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(10, 5), sharex=True)
    for index, name in enumerate(names[:max_signals]):
        top.plot(steps, signal[:, index], linewidth=0.8, label=name)
    top.set_ylabel("reading")
    top.legend(loc="upper left", fontsize=8)
    bottom.plot(steps, errors, color="tab:purple", linewidth=0.8, label="score")
    bottom.axhline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.4g}")
    bottom.set_ylabel("score")
    bottom.legend(loc="upper left", fontsize=8)
    if labels is not None:
        marked = np.asarray(labels).astype(bool)
        edges = np.flatnonzero(np.diff(np.r_[False, marked, False].astype(int)))
        for start, end in zip(edges[::2], edges[1::2], strict=True):
            for axis in (top, bottom):
                axis.axvspan(steps[start], steps[end - 1], color="tab:red", alpha=0.15, lw=0)
    figure.suptitle("Test series, scores and threshold (labelled anomalies shaded)")
    figure.tight_layout()
    return figure


def sample_grid(images: np.ndarray, per_row: int = 8, max_images: int = 64) -> Figure:
    """Generated images (N, C, H, W) in original units, ``per_row`` to a row."""
    images = images[:max_images]
    rows = max(1, -(-len(images) // per_row))
    figure, axes = plt.subplots(
        rows, per_row, figsize=(1.2 * per_row, 1.2 * rows + 0.6), squeeze=False
    )
    low, high = float(images.min(initial=0.0)), float(images.max(initial=1.0))
    for index, axis in enumerate(axes.flat):
        axis.set_xticks([])
        axis.set_yticks([])
        if index >= len(images):
            axis.axis("off")
            continue
        picture = _picture(images[index])
        axis.imshow((picture - low) / (high - low or 1.0), cmap="gray", vmin=0, vmax=1)
    figure.suptitle(f"{len(images)} images sampled from the VAE's prior")
    figure.tight_layout()
    return figure


def generated_windows(
    windows: np.ndarray, names: list[str], max_windows: int = 6, max_signals: int = 3
) -> Figure:
    """Generated windows (N, T, F): one panel per window, up to ``max_signals`` readings."""
    count = min(len(windows), max_windows)
    figure, axes = plt.subplots(count, 1, figsize=(9, 1.6 * count + 0.6), sharex=True)
    axes = np.atleast_1d(axes)
    for index, axis in enumerate(axes):
        for feature, name in enumerate(names[:max_signals]):
            axis.plot(windows[index, :, feature], linewidth=0.9, label=name)
        axis.set_ylabel(f"sample {index}", fontsize=8)
    axes[0].legend(loc="upper right", fontsize=8)
    axes[-1].set_xlabel("step")
    figure.suptitle("Windows sampled from the VAE's prior")
    figure.tight_layout()
    return figure


def feature_distributions(rows: np.ndarray, names: list[str], max_features: int = 12) -> Figure:
    """Histogram of each of the first ``max_features`` columns of generated rows (N, F)."""
    count = min(len(names), max_features)
    columns = min(count, 4)
    lines = -(-count // columns)
    figure, axes = plt.subplots(
        lines, columns, figsize=(3 * columns, 2.2 * lines + 0.6), squeeze=False
    )
    for index, axis in enumerate(axes.flat):
        if index >= count:
            axis.axis("off")
            continue
        axis.hist(rows[:, index], bins=30, color="tab:green", alpha=0.8)
        axis.set_title(names[index], fontsize=8)
        axis.tick_params(labelsize=7)
    figure.suptitle("Distributions of rows sampled from the VAE's prior")
    figure.tight_layout()
    return figure


def _picture(image: np.ndarray) -> np.ndarray:
    """A (C, H, W) image as matplotlib draws it: one channel as gray, two as their
    mean in gray (it draws only 1, 3 or 4), more as the first three in colour."""
    if image.shape[0] < 3:
        return image.mean(axis=0)
    return np.moveaxis(image[:3], 0, -1)
