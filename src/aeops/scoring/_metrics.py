"""Detection metrics of reconstruction errors against labels."""

from __future__ import annotations

import numpy as np

#: What an evaluation (``aeops.scoring.evaluation``) gives for a split, each named
#: ``<split>_<name>``: the metrics a champion can be compared on (those that need
#: labels only with labels, and only where they are defined).
SPLIT_METRICS = (
    "auroc",
    "auprc",
    "precision_at_k",
    "precision",
    "recall",
    "f1",
    "alert_rate",
    "error_mean",
)
#: Those of :data:`SPLIT_METRICS` that need no labels.
LABEL_FREE_METRICS = ("alert_rate", "error_mean")


def detection_metrics(
    labels: np.ndarray, errors: np.ndarray, threshold: float, prefix: str
) -> dict[str, float]:
    """AUROC, AUPRC, precision@k, and precision, recall and F1 at ``threshold``.

    Args:
        labels: 1 for anomalies, 0 for normal rows.
        errors: reconstruction errors, higher meaning more anomalous.
        threshold: errors strictly above it are flagged.
        prefix: the split's name, so every metric says where it came from (``test``).

    Returns:
        ``{f"{prefix}_auroc": ..., ...}``. A metric undefined on these rows is left out,
        rather than logged as 0: AUROC, AUPRC and precision@k with one class only,
        recall and F1 with no anomaly among the labels. Precision with no row flagged
        is 0 (no alert is a hit), so a model that flags nothing compares as the worst.
    """
    # Imported here: scoring at batch time (a bare GPU image) does not need scikit-learn.
    from sklearn.metrics import (
        average_precision_score,
        precision_recall_fscore_support,
        roc_auc_score,
    )

    labels = np.asarray(labels).astype(int)
    flagged = np.asarray(errors) > threshold
    metrics: dict[str, float] = {"alert_rate": float(flagged.mean())}
    if np.unique(labels).size == 2:
        metrics["auroc"] = float(roc_auc_score(labels, errors))
        metrics["auprc"] = float(average_precision_score(labels, errors))
        metrics["precision_at_k"] = _precision_at_k(labels, np.asarray(errors))
    precision, recall, f1, _ = precision_recall_fscore_support(
        labels, flagged.astype(int), average="binary", zero_division=0
    )
    metrics["precision"] = float(precision)  # 0 when nothing is flagged: no hit
    if labels.any():
        metrics.update(recall=float(recall), f1=float(f1))
    return {f"{prefix}_{name}": value for name, value in metrics.items()}


def _precision_at_k(labels: np.ndarray, errors: np.ndarray) -> float:
    """Precision among the k highest errors, k = the number of true anomalies.

    Rows tied with the k-th highest error share the slots left for them, each
    counting for its share: the value does not depend on the rows' order in the file.
    """
    k = int(labels.sum())
    kth = np.sort(errors)[::-1][k - 1]
    above, tied = errors > kth, errors == kth
    slots_left = k - int(above.sum())
    hits = labels[above].sum() + labels[tied].sum() * slots_left / tied.sum()
    return float(hits / k)
