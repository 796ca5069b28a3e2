"""Anomaly thresholds chosen on validation reconstruction errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class ThresholdConfig(BaseModel):
    """The ``threshold`` block."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Literal["quantile"] = "quantile"
    quantile: float = Field(default=0.95, gt=0.0, lt=1.0)


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


def choose_threshold(validation_errors: np.ndarray, config: ThresholdConfig) -> Threshold:
    """Choose the anomaly threshold from validation errors, never from test labels.

    Args:
        validation_errors: per-sample reconstruction errors on the validation split.
        config: the ``threshold`` block.

    Returns:
        The threshold, with the validation error quantiles and the alert rate it
        implies on validation data as diagnostics.

    Raises:
        ValueError: if there are no errors or some are not finite.
    """
    errors = np.asarray(validation_errors, dtype=np.float64)
    if errors.size == 0:
        raise ValueError("cannot choose a threshold from zero validation errors")
    if not np.isfinite(errors).all():
        raise ValueError("validation errors contain NaN or inf; the model output is not finite")
    value = float(np.quantile(errors, config.quantile))
    quantiles = np.quantile(errors, [0.5, 0.9, 0.95, 0.99])
    diagnostics = {
        "validation_error_p50": float(quantiles[0]),
        "validation_error_p90": float(quantiles[1]),
        "validation_error_p95": float(quantiles[2]),
        "validation_error_p99": float(quantiles[3]),
        "validation_alert_rate": float((errors > value).mean()),
        "quantile": config.quantile,
    }
    return Threshold(value=value, method=config.method, diagnostics=diagnostics)
