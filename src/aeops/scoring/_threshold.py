"""Anomaly thresholds chosen on validation reconstruction errors."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

logger = logging.getLogger(__name__)

# POT: below this many peaks the fitted tail is a long extrapolation (warned).
_FEW_PEAKS = 30
# No float32 error exceeds this: a threshold above it flags nothing.
_FLOAT32_MAX = float(np.finfo(np.float32).max)


class ThresholdConfig(BaseModel):
    """The ``threshold`` block: how validation errors become the anomaly threshold.

    ``quantile``: the ``quantile`` of validation errors (1 - expected contamination).
    ``zscore``: mean + ``k`` * std. ``mad``: median + ``k`` * 1.4826 * MAD (robust).
    ``iqr``: Q3 + ``k`` * IQR. ``fpr``: the threshold that flags ``target_fpr`` of the
    normal validation rows (all rows when there are no labels). ``f1``: the best F1 on a
    labelled validation split. ``pot``: peaks over threshold, a generalised Pareto
    tail fitted above the ``pot_initial_quantile`` and read at the ``pot_risk`` level.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Literal["quantile", "zscore", "mad", "iqr", "fpr", "f1", "pot"] = "quantile"
    quantile: float = Field(default=0.95, gt=0.0, lt=1.0)
    k: float | None = Field(default=None, gt=0.0)  # zscore, mad: 3; iqr: 1.5
    target_fpr: float = Field(default=0.01, gt=0.0, lt=1.0)
    pot_risk: float = Field(default=1e-3, gt=0.0, lt=1.0)
    pot_initial_quantile: float = Field(default=0.98, gt=0.5, lt=1.0)

    @model_validator(mode="after")
    def _risk_within_the_tail(self) -> ThresholdConfig:
        # The fitted tail describes errors above the initial threshold only: a risk
        # as large as the share above it would be read where no tail was fitted.
        if self.method == "pot" and self.pot_risk >= 1.0 - self.pot_initial_quantile:
            raise ValueError(
                f"threshold.pot_risk={self.pot_risk} must be below 1 - "
                f"threshold.pot_initial_quantile = {1.0 - self.pot_initial_quantile:.6g} "
                "(the share of errors the tail is fitted on); lower pot_risk or "
                "pot_initial_quantile"
            )
        return self


@dataclass(frozen=True)
class Threshold:
    """A chosen threshold: errors strictly above ``value`` are anomalies."""

    value: float
    method: str
    diagnostics: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"value": self.value, "method": self.method, "diagnostics": self.diagnostics}

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> Threshold:
        """Inverse of :meth:`to_dict`."""
        return cls(
            value=float(payload["value"]),
            method=str(payload["method"]),
            diagnostics={k: float(v) for k, v in payload.get("diagnostics", {}).items()},
        )


class ThresholdError(ValueError):
    """A threshold method cannot be applied to the validation errors it was given."""


def _best_f1(errors: np.ndarray, labels: np.ndarray) -> float:
    """The threshold with the best F1 (flagging errors strictly above it)."""
    order = np.argsort(-errors, kind="stable")
    sorted_errors, sorted_labels = errors[order], labels[order]
    true_positives = np.cumsum(sorted_labels)
    flagged = np.arange(1, len(errors) + 1)
    f1 = 2 * true_positives / (flagged + sorted_labels.sum())
    # Only cut between distinct errors: ties are flagged together.
    distinct = np.r_[sorted_errors[1:] < sorted_errors[:-1], True]
    best = int(np.argmax(np.where(distinct, f1, -1.0)))
    lowest_flagged = float(sorted_errors[best])
    if best + 1 == len(errors):  # flag every row: just below the smallest error
        return float(np.nextafter(lowest_flagged, -np.inf))
    highest_kept = float(sorted_errors[best + 1])
    middle = (lowest_flagged + highest_kept) / 2
    # Between two neighbouring floats the middle rounds to one of them.
    return middle if highest_kept <= middle < lowest_flagged else highest_kept


def peaks_over_threshold(errors: np.ndarray, risk: float, initial_quantile: float) -> float:
    """The error exceeded with probability ``risk``, from a generalised Pareto tail.

    Peaks above the initial threshold ``t`` (the ``initial_quantile`` of ``errors``)
    are fitted with a generalised Pareto distribution (shape ``xi``, scale ``sigma``);
    the threshold is ``t + sigma / xi * ((risk * n / n_peaks) ** -xi - 1)``, or
    ``t - sigma * log(risk * n / n_peaks)`` as ``xi`` goes to 0 (Siffer et al., 2017).

    The fit is an extrapolation: it warns when it rests on fewer than
    ``_FEW_PEAKS`` peaks (the realised risk then runs well above ``risk``) and when the
    fitted tail looks bounded or tied (``xi`` below -0.5, duplicate rows at the top,
    where maximum likelihood is unreliable).

    Raises:
        ThresholdError: with fewer than 10 peaks to fit, or when the tail read at
            ``risk`` lies beyond the largest float32 (no error could exceed it).
    """
    from scipy.stats import genpareto

    initial = float(np.quantile(errors, initial_quantile))
    peaks = errors[errors > initial] - initial
    if peaks.size < 10:
        raise ThresholdError(
            f"threshold.method='pot' needs at least 10 validation errors above the "
            f"{initial_quantile} quantile, got {peaks.size}; lower "
            "threshold.pot_initial_quantile or use more validation rows"
        )
    if peaks.size < _FEW_PEAKS:
        logger.warning(
            "threshold.method='pot': the tail fit rests on %d validation errors above the "
            "%g quantile; with fewer than %d, new errors often exceed the threshold well "
            "more often than pot_risk=%g. Use more validation rows, or a larger pot_risk",
            peaks.size,
            initial_quantile,
            _FEW_PEAKS,
            risk,
        )
    shape, _, scale = genpareto.fit(peaks, floc=0.0)
    if shape < -0.5:
        logger.warning(
            "threshold.method='pot': the fitted tail is bounded (shape %.3g, below -0.5, "
            "where the fit is unreliable), so the threshold sits near the largest "
            "validation error. Repeated rows at the top of the validation errors? "
            "Consider threshold.method='quantile' or 'fpr'",
            shape,
        )
    ratio = risk * errors.size / peaks.size
    if ratio >= 1.0:  # ties at the initial threshold left fewer peaks than its share
        raise ThresholdError(
            f"threshold.pot_risk={risk} is not below the share of validation errors "
            f"above the initial threshold ({peaks.size / errors.size:.6g}); lower "
            "threshold.pot_risk or threshold.pot_initial_quantile"
        )
    value = tail_quantile(initial, float(shape), float(scale), ratio)
    if not value <= _FLOAT32_MAX:
        raise ThresholdError(
            f"threshold.pot_risk={risk} reads the fitted tail (shape {shape:.3g}) beyond "
            f"the largest float32 ({value:.3g}), so no error could ever exceed it; "
            "raise threshold.pot_risk"
        )
    return value


def tail_quantile(initial: float, shape: float, scale: float, ratio: float) -> float:
    """Where a generalised Pareto tail above ``initial`` is exceeded with probability
    ``ratio`` (the risk over the share of peaks); its exponential limit near ``shape``
    0, where the general form loses its digits."""
    if abs(shape) < 1e-6:
        return initial - scale * float(np.log(ratio))
    try:
        return initial + scale / shape * (ratio ** (-shape) - 1.0)
    except OverflowError:  # a heavy tail read at a tiny risk
        return float("inf")


def choose_threshold(
    validation_errors: np.ndarray,
    config: ThresholdConfig,
    labels: np.ndarray | None = None,
) -> Threshold:
    """Choose the anomaly threshold from validation errors, never from test labels.

    Args:
        validation_errors: per-sample reconstruction errors on the validation split.
        config: the ``threshold`` block.
        labels: validation labels (1 = anomaly), when the data has them; ``f1`` needs
            them, ``fpr`` uses only the normal rows when they are given.

    Returns:
        The threshold, with the validation error quantiles and the alert rate it
        implies on validation data as diagnostics.

    Raises:
        ValueError: if there are no errors or some are not finite.
        ThresholdError: if the method cannot apply (``f1`` without labels, ``pot``
            with too short a tail).
    """
    errors = np.asarray(validation_errors, dtype=np.float64)
    if errors.size == 0:
        raise ValueError("cannot choose a threshold from zero validation errors")
    if not np.isfinite(errors).all():
        raise ValueError("validation errors contain NaN or inf; the model output is not finite")
    known = None if labels is None else np.asarray(labels).astype(int)
    method = config.method
    value = _METHODS[method](errors, config, known)
    quantiles = np.quantile(errors, [0.5, 0.9, 0.95, 0.99])
    diagnostics = {
        "validation_error_p50": float(quantiles[0]),
        "validation_error_p90": float(quantiles[1]),
        "validation_error_p95": float(quantiles[2]),
        "validation_error_p99": float(quantiles[3]),
        "validation_alert_rate": float((errors > value).mean()),
        "validation_rows": float(errors.size),
    }
    if method == "quantile":
        diagnostics["quantile"] = config.quantile
    return Threshold(value=value, method=method, diagnostics=diagnostics)


def _quantile(errors: np.ndarray, config: ThresholdConfig, labels: np.ndarray | None) -> float:
    if errors.size * (1.0 - config.quantile) < 1.0 - 1e-9:  # 10 x (1 - 0.9) is 0.999...
        logger.warning(
            "threshold.method='quantile' at %g: with %d validation errors the threshold "
            "lies between the largest ones, and new data will be flagged well above %g "
            "of the time; use at least %d validation rows, or a lower quantile",
            config.quantile,
            errors.size,
            1.0 - config.quantile,
            int(np.ceil(1.0 / (1.0 - config.quantile) - 1e-9)),
        )
    return float(np.quantile(errors, config.quantile))


def _zscore(errors: np.ndarray, config: ThresholdConfig, labels: np.ndarray | None) -> float:
    return float(errors.mean() + (config.k or 3.0) * errors.std())


def _mad(errors: np.ndarray, config: ThresholdConfig, labels: np.ndarray | None) -> float:
    median = float(np.median(errors))
    deviations = np.abs(errors - median)
    mad = 1.4826 * float(np.median(deviations))
    if mad == 0.0:  # over half the errors tie: every other one would be flagged
        mad = 1.2533 * float(deviations.mean())  # the mean absolute deviation's scale
        _warn_tied("mad", "the mean absolute deviation (x 1.2533)")
    return median + (config.k or 3.0) * mad


def _iqr(errors: np.ndarray, config: ThresholdConfig, labels: np.ndarray | None) -> float:
    q1, q3 = np.quantile(errors, [0.25, 0.75])
    spread = float(q3 - q1)
    if spread == 0.0:  # half the errors tie: every one above them would be flagged
        spread = 1.349 * float(errors.std())  # the IQR of a normal with this std
        _warn_tied("iqr", "the standard deviation (x 1.349)")
    return float(q3 + (config.k or 1.5) * spread)


def _fpr(errors: np.ndarray, config: ThresholdConfig, labels: np.ndarray | None) -> float:
    normal = errors if labels is None else errors[labels == 0]
    if normal.size == 0:
        raise ThresholdError(
            "threshold.method='fpr' needs normal rows (label 0) on the validation split, "
            f"and its {errors.size} labelled rows are all anomalies; choose quantile or "
            "pot, or a split with normal rows"
        )
    return _at_most_fpr(normal, config.target_fpr)


def _f1(errors: np.ndarray, config: ThresholdConfig, labels: np.ndarray | None) -> float:
    if labels is None:
        raise ThresholdError(
            "threshold.method='f1' needs labels with both classes on the validation "
            "split; set data.label_column, or choose quantile, fpr or pot"
        )
    if np.unique(labels).size < 2:
        only = "anomalies" if labels.all() else "normal rows"
        raise ThresholdError(
            f"threshold.method='f1' needs both classes on the validation split, and its "
            f"{labels.size} labelled rows are all {only}; choose quantile, fpr or pot, "
            "or a split that puts anomalies in validation (data.split.stratify, or for "
            "a series, data.split.validation)"
        )
    return _best_f1(errors, labels)


def _pot(errors: np.ndarray, config: ThresholdConfig, labels: np.ndarray | None) -> float:
    return peaks_over_threshold(errors, config.pot_risk, config.pot_initial_quantile)


# How each ``threshold.method`` turns validation errors (and labels) into a threshold.
_METHODS: dict[str, Callable[[np.ndarray, ThresholdConfig, np.ndarray | None], float]] = {
    "quantile": _quantile,
    "zscore": _zscore,
    "mad": _mad,
    "iqr": _iqr,
    "fpr": _fpr,
    "f1": _f1,
    "pot": _pot,
}


def _warn_tied(method: str, fallback: str) -> None:
    logger.warning(
        "threshold.method=%r: the spread of the validation errors is 0 (at least half of "
        "them are equal, say duplicate rows); using %s instead",
        method,
        fallback,
    )


def _at_most_fpr(normal: np.ndarray, target_fpr: float) -> float:
    """The smallest order statistic of ``normal`` that flags (``>``) no more than
    ``target_fpr`` of them: an interpolated quantile flags the largest row of a set
    smaller than 1 / ``target_fpr``, several times the target."""
    allowed = int(np.floor(target_fpr * normal.size + 1e-9))
    if allowed == 0:
        logger.warning(
            "threshold.method='fpr' at %g needs at least %d normal validation rows to "
            "flag any of them; with %d the threshold is their largest error",
            target_fpr,
            int(np.ceil(1 / target_fpr - 1e-9)),
            normal.size,
        )
    return float(np.partition(normal, normal.size - 1 - allowed)[normal.size - 1 - allowed])
