"""The score jobs' error summary: exact counts, quantiles within the sketch's accuracy."""

from __future__ import annotations

import numpy as np
import pytest

from aeops.embedding._summary import (
    RELATIVE_ACCURACY,
    ErrorSummary,
    alert_rate_is_unusual,
    describe_alert_rate,
)

FLOAT32_MAX = float(np.finfo(np.float32).max)


def _errors(n: int, seed: int) -> np.ndarray:
    """Errors over many orders of magnitude, with exact zeros and overflowed rows."""
    rng = np.random.default_rng(seed)
    errors = rng.lognormal(mean=-2.0, sigma=3.0, size=n)
    errors[rng.choice(n, n // 50, replace=False)] = 0.0
    errors[rng.choice(n, 5, replace=False)] = FLOAT32_MAX
    return errors


@pytest.mark.parametrize("q", [0.0, 0.01, 0.3, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0])
def test_quantiles_are_within_the_relative_accuracy_of_numpys(q: float) -> None:
    errors = _errors(100_003, seed=0)
    summary = ErrorSummary()
    for batch in np.array_split(errors, 7):
        summary.add(batch, batch > 1.0)
    exact = float(np.quantile(errors, q, method="lower"))
    assert summary.quantile(q) == pytest.approx(exact, rel=RELATIVE_ACCURACY * (1 + 1e-9), abs=0)


def test_counts_are_exact_and_summaries_of_parts_add_up_to_the_whole() -> None:
    errors = _errors(50_000, seed=1)
    flags = errors > 0.5
    whole = ErrorSummary()
    whole.add(errors, flags)
    assert (whole.rows, whole.flagged) == (50_000, int(flags.sum()))
    assert whole.zeros == int((errors == 0).sum())
    assert whole.maximum == FLOAT32_MAX
    assert whole.quantile(1.0) == FLOAT32_MAX  # never above the largest error
    merged = ErrorSummary()
    for part in np.array_split(np.arange(errors.size), 3):
        piece = ErrorSummary()
        piece.add(errors[part], flags[part])
        merged.merge(
            ErrorSummary.from_sparse(
                piece.rows, piece.flagged, piece.zeros, piece.maximum, *piece.to_sparse()
            )
        )
    assert (merged.rows, merged.flagged, merged.zeros) == (whole.rows, whole.flagged, whole.zeros)
    np.testing.assert_array_equal(merged.counts, whole.counts)


def test_a_nan_error_counts_as_the_largest_and_tiny_ones_as_the_smallest() -> None:
    summary = ErrorSummary()
    summary.add(np.array([np.nan, 1e-300, 2.0, 0.0]), np.array([True, False, False, False]))
    assert summary.rows == 4 and summary.zeros == 1
    assert summary.maximum == FLOAT32_MAX
    assert summary.quantile(0.0) == 0.0
    assert 0 < summary.quantile(1 / 3) <= 1e-30 * (1 + RELATIVE_ACCURACY)
    assert summary.quantile(2 / 3) == pytest.approx(2.0, rel=RELATIVE_ACCURACY)


def test_metrics_name_the_alert_rate_and_the_validation_quantiles_counterparts() -> None:
    summary = ErrorSummary()
    summary.add(np.arange(1.0, 101.0), np.arange(100) >= 90)
    metrics = summary.metrics()
    assert set(metrics) == {
        "flagged_rows",
        "alert_rate",
        "error_p50",
        "error_p90",
        "error_p95",
        "error_p99",
        "error_max",
    }
    assert metrics["alert_rate"] == 0.1 and metrics["error_max"] == 100.0
    assert metrics["error_p90"] == pytest.approx(90.0, rel=RELATIVE_ACCURACY)
    assert ErrorSummary().metrics() == {"flagged_rows": 0.0}
    with pytest.raises(ValueError, match="no errors"):
        ErrorSummary().quantile(0.5)


def test_an_alert_rate_far_above_the_validation_rows_is_unusual_only_beyond_chance() -> None:
    def flagged(n: int, k: int) -> ErrorSummary:
        summary = ErrorSummary()
        summary.add(np.ones(n), np.arange(n) < k)
        return summary

    assert alert_rate_is_unusual(flagged(10_000, 2_000), 0.05, 200)  # 20% against 5%
    assert not alert_rate_is_unusual(flagged(10_000, 600), 0.05, 200)  # 6%: within reason
    assert not alert_rate_is_unusual(flagged(20, 4), 0.05, 200)  # 20%, but of 20 rows
    assert not alert_rate_is_unusual(flagged(100, 50), None, None)  # nothing to compare with
    # A threshold above every one of 99 validation errors: 0% there, read as under 1%.
    assert alert_rate_is_unusual(flagged(100, 50), 0.0, 99)
    assert not alert_rate_is_unusual(flagged(1_000, 20), 0.0, 99)  # 2%: could be 1%
    assert not alert_rate_is_unusual(flagged(100, 50), 0.0, None)  # an older bundle
    assert describe_alert_rate(flagged(10_000, 2_000), 0.05) == (
        "Flagged 2,000 of 10,000 rows as anomalies (20.00%); "
        "the threshold flagged 5.00% of the validation rows"
    )
