"""What a scoring job flagged, and how its errors were spread, in bounded memory.

A score job can be far larger than memory, so its error quantiles come from a sketch:
errors fall into buckets whose bounds grow geometrically (as in DDSketch), and a
quantile is read back within ``RELATIVE_ACCURACY`` of the exact order statistic. The
buckets are fixed, so summaries of batches, parts or Spark partitions add up exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

# A quantile is within this share of the exact one (for errors above _SMALLEST).
RELATIVE_ACCURACY = 0.005
_GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_LOG_GAMMA = math.log(_GAMMA)
# Errors below this share the lowest bucket; no error exceeds float32's largest (an
# overflowing or uncomputable row counts as that, see aeops.scoring).
_SMALLEST = 1e-30
_LARGEST = float(np.finfo(np.float32).max)
_LOW = math.ceil(math.log(_SMALLEST) / _LOG_GAMMA)
_BUCKETS = math.ceil(math.log(_LARGEST) / _LOG_GAMMA) - _LOW + 1

# The quantiles a job reports, named as the threshold's validation diagnostics are.
REPORTED_QUANTILES = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99}


@dataclass
class ErrorSummary:
    """Rows scored, rows flagged, and a sketch of their reconstruction errors.

    Attributes:
        rows: errors seen.
        flagged: rows flagged as anomalies.
        zeros: errors of exactly 0 (a perfect reconstruction).
        maximum: the largest error, exactly.
        counts: errors per bucket; bucket ``i`` holds errors in
            ``(gamma ** (i + low - 1), gamma ** (i + low)]``.
    """

    rows: int = 0
    flagged: int = 0
    zeros: int = 0
    maximum: float = 0.0
    counts: np.ndarray = field(default_factory=lambda: np.zeros(_BUCKETS, dtype=np.int64))

    def add(self, errors: np.ndarray, flags: np.ndarray) -> None:
        """Count one batch's errors and anomaly flags. A NaN counts as the largest error,
        as the scorer ranks a row it cannot compute."""
        errors = np.asarray(errors, dtype=np.float64)
        if errors.size == 0:
            return
        if np.isnan(errors).any():
            errors = np.where(np.isnan(errors), _LARGEST, errors)
        self.rows += errors.size
        self.flagged += int(np.count_nonzero(flags))
        self.maximum = max(self.maximum, float(errors.max()))
        positive = errors[errors > 0]
        self.zeros += errors.size - positive.size
        logs = np.log(np.clip(positive, _SMALLEST, _LARGEST)) / _LOG_GAMMA
        index = np.ceil(logs).astype(np.intp) - _LOW
        self.counts += np.bincount(np.clip(index, 0, _BUCKETS - 1), minlength=_BUCKETS)

    def merge(self, other: ErrorSummary) -> None:
        """Add ``other``'s rows to these (batches, parts, partitions)."""
        self.rows += other.rows
        self.flagged += other.flagged
        self.zeros += other.zeros
        self.maximum = max(self.maximum, other.maximum)
        self.counts += other.counts

    def quantile(self, q: float) -> float:
        """The error of rank ``floor(q * (rows - 1))`` in ascending order (numpy's
        ``method="lower"``), within :data:`RELATIVE_ACCURACY` of it.

        Raises:
            ValueError: with no rows, or ``q`` outside [0, 1].
        """
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile {q} is outside [0, 1]")
        if self.rows == 0:
            raise ValueError("no errors to take a quantile of")
        rank = math.floor(q * (self.rows - 1))
        if rank < self.zeros:
            return 0.0
        bucket = int(np.searchsorted(np.cumsum(self.counts), rank - self.zeros, side="right"))
        # The point of the bucket within RELATIVE_ACCURACY of both its bounds.
        estimate = 2.0 * _GAMMA ** (bucket + _LOW) / (_GAMMA + 1.0)
        return min(estimate, self.maximum)

    def metrics(self) -> dict[str, float]:
        """``flagged_rows``, ``alert_rate`` and the error quantiles (``error_p50``,
        ..., ``error_max``); only the counts when there were no rows."""
        metrics = {"flagged_rows": float(self.flagged)}
        if self.rows:
            metrics["alert_rate"] = self.flagged / self.rows
            for name, q in REPORTED_QUANTILES.items():
                metrics[f"error_{name}"] = self.quantile(q)
            metrics["error_max"] = self.maximum
        return metrics

    def to_sparse(self) -> tuple[list[int], list[int]]:
        """The non-empty buckets and their counts, to send from a Spark task."""
        buckets = np.flatnonzero(self.counts)
        return buckets.tolist(), self.counts[buckets].tolist()

    @classmethod
    def from_sparse(
        cls,
        rows: int,
        flagged: int,
        zeros: int,
        maximum: float,
        buckets: list[int],
        counts: list[int],
    ) -> ErrorSummary:
        """Inverse of :meth:`to_sparse`, with the scalar fields."""
        summary = cls(rows=rows, flagged=flagged, zeros=zeros, maximum=maximum)
        summary.counts[np.asarray(buckets, dtype=np.intp)] = np.asarray(counts, dtype=np.int64)
        return summary


# An alert rate this many times the validation rows' is warned of, when chance alone
# would give it with at most _UNLIKELY probability.
_ALERT_RATE_FACTOR = 3.0
_UNLIKELY = 1e-6


def describe_alert_rate(summary: ErrorSummary, validation_alert_rate: float | None) -> str:
    """A line for the job's log: rows flagged, beside the share of validation rows the
    threshold flagged when the model was trained."""
    rate = summary.flagged / summary.rows if summary.rows else 0.0
    line = f"Flagged {summary.flagged:,} of {summary.rows:,} rows as anomalies ({rate:.2%})"
    if validation_alert_rate is not None:
        line += f"; the threshold flagged {validation_alert_rate:.2%} of the validation rows"
    return line


def alert_rate_is_unusual(
    summary: ErrorSummary, validation_alert_rate: float | None, validation_rows: float | None
) -> bool:
    """Whether the job flagged over ``_ALERT_RATE_FACTOR`` times the validation rows'
    share, by more than chance explains: the data may have drifted from the training
    data, or a feature changed its units. A share of 0 (a threshold above every
    validation error) counts as 1 / (validation rows + 1), what so few rows cannot
    tell from 0; without the count (older bundles) nothing is compared with it."""
    if not summary.rows or validation_alert_rate is None:
        return False
    expected = validation_alert_rate
    if validation_rows:
        expected = max(expected, 1.0 / (validation_rows + 1.0))
    if expected <= 0.0:
        return False
    from scipy.stats import binom

    rate = summary.flagged / summary.rows
    chance = float(binom.sf(summary.flagged - 1, summary.rows, expected))
    return rate > _ALERT_RATE_FACTOR * expected and chance < _UNLIKELY
