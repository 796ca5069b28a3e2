"""Each threshold method on data with a known answer."""

from __future__ import annotations

from typing import get_args

import numpy as np
import pytest
from scipy.stats import norm

from aeops.scoring import ThresholdConfig, ThresholdError, choose_threshold, peaks_over_threshold
from aeops.scoring._threshold import tail_quantile


def _normal(n: int = 200_000, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=n)


def test_zscore_is_mean_plus_k_std() -> None:
    errors = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    chosen = choose_threshold(errors, ThresholdConfig(method="zscore", k=2.0))
    assert chosen.value == pytest.approx(3.0 + 2.0 * np.std(errors))


def test_mad_ignores_a_few_huge_outliers_and_matches_the_sd_on_normal_data() -> None:
    errors = _normal()
    clean = choose_threshold(errors, ThresholdConfig(method="mad", k=3.0)).value
    assert clean == pytest.approx(3.0, abs=0.05)  # 1.4826 * MAD estimates the SD
    spiked = np.r_[errors, np.full(1000, 1e6)]
    assert choose_threshold(spiked, ThresholdConfig(method="mad", k=3.0)).value < 3.1
    assert choose_threshold(spiked, ThresholdConfig(method="zscore", k=3.0)).value > 1e4


@pytest.mark.parametrize(("method", "expected"), [("zscore", 3.0), ("mad", 3.0)])
def test_zscore_and_mad_default_to_three_spreads(method: str, expected: float) -> None:
    errors = _normal()
    chosen = choose_threshold(errors, ThresholdConfig(method=method))  # type: ignore[arg-type]
    assert chosen.value == pytest.approx(expected, abs=0.05)  # the SD of these errors is 1


def test_iqr_is_q3_plus_k_iqr() -> None:
    errors = np.arange(0.0, 101.0)  # Q1 = 25, Q3 = 75
    assert choose_threshold(errors, ThresholdConfig(method="iqr")).value == pytest.approx(150.0)


def test_fpr_flags_the_target_share_of_normal_rows_only() -> None:
    errors = _normal()
    chosen = choose_threshold(errors, ThresholdConfig(method="fpr", target_fpr=0.01))
    assert chosen.value == pytest.approx(norm.ppf(0.99), abs=0.03)
    labelled = np.r_[errors, np.full(50_000, 10.0)]
    labels = np.r_[np.zeros(errors.size), np.ones(50_000)]
    same = choose_threshold(labelled, ThresholdConfig(method="fpr", target_fpr=0.01), labels)
    assert same.value == pytest.approx(chosen.value)  # anomalies do not move it


@pytest.mark.parametrize(("n", "flagged"), [(20, 0), (50, 0), (100, 1), (250, 2), (1000, 10)])
def test_fpr_never_flags_more_than_the_target_share_of_a_small_set(n: int, flagged: int) -> None:
    # An interpolated quantile flagged the largest of 20 rows: 5 times the target.
    errors = np.random.default_rng(n).exponential(size=n)
    chosen = choose_threshold(errors, ThresholdConfig(method="fpr", target_fpr=0.01))
    assert int((errors > chosen.value).sum()) == flagged
    assert chosen.value in errors
    assert chosen.diagnostics["validation_alert_rate"] == flagged / n  # its own row is not


def test_fpr_without_normal_validation_rows_is_a_clear_error() -> None:
    with pytest.raises(ThresholdError, match=r"needs normal rows .* 4 labelled rows are all"):
        choose_threshold(np.arange(4.0), ThresholdConfig(method="fpr"), np.ones(4))


def test_f1_finds_the_gap_between_classes() -> None:
    errors = np.array([0.1, 0.2, 0.3, 0.9, 1.0, 1.1])
    labels = np.array([0, 0, 0, 1, 1, 1])
    chosen = choose_threshold(errors, ThresholdConfig(method="f1"), labels)
    assert 0.3 <= chosen.value < 0.9
    assert chosen.diagnostics["validation_alert_rate"] == pytest.approx(0.5)


def test_f1_flags_tied_errors_together() -> None:
    # Cutting between the two tied errors would flag none of them.
    errors, labels = np.array([1.0, 1.0, 0.0]), np.array([1, 0, 0])
    chosen = choose_threshold(errors, ThresholdConfig(method="f1"), labels)
    assert 0.0 <= chosen.value < 1.0


def test_f1_cuts_exactly_between_neighbouring_floats_and_below_huge_errors() -> None:
    # The middle of two neighbouring floats rounds to the upper one, which flags
    # nothing; "the smallest error less 1" is the smallest error itself at 3e16.
    one = 1.0
    errors = np.array([one, np.nextafter(one, 2.0), np.nextafter(np.nextafter(one, 2.0), 2.0)])
    chosen = choose_threshold(errors, ThresholdConfig(method="f1"), np.array([0, 0, 1]))
    assert (errors > chosen.value).tolist() == [False, False, True]
    huge = np.array([5e16, 4e16, 3e16])
    chosen = choose_threshold(huge, ThresholdConfig(method="f1"), np.array([1, 0, 1]))
    assert (huge > chosen.value).all()


def test_f1_without_labels_is_a_clear_error() -> None:
    with pytest.raises(ThresholdError, match=r"method='f1' needs labels"):
        choose_threshold(np.arange(10.0), ThresholdConfig(method="f1"))


def test_f1_with_labels_of_one_class_says_so_not_to_set_the_label_column() -> None:
    config = ThresholdConfig(method="f1")
    with pytest.raises(ThresholdError, match=r"its 10 labelled rows are all normal rows") as info:
        choose_threshold(np.arange(10.0), config, labels=np.zeros(10))
    assert "label_column" not in str(info.value)
    with pytest.raises(ThresholdError, match=r"its 3 labelled rows are all anomalies"):
        choose_threshold(np.arange(3.0), config, labels=np.ones(3))


@pytest.mark.parametrize("method", ["mad", "iqr"])
def test_robust_spreads_of_zero_fall_back_instead_of_flagging_every_untied_error(
    method: str,
) -> None:
    rng = np.random.default_rng(0)
    # 80% of the errors tie (duplicate rows): the MAD and the IQR are both 0.
    errors = np.r_[np.full(800, 0.5), 0.5 + np.abs(rng.normal(scale=0.1, size=200))]
    chosen = choose_threshold(errors, ThresholdConfig(method=method))  # type: ignore[arg-type]
    assert chosen.value > 0.5
    assert chosen.diagnostics["validation_alert_rate"] < 0.15  # not the 20% above the tie
    fallback = {  # the spread a normal distribution with this deviation would have
        "mad": 0.5 + 3.0 * 1.2533 * np.abs(errors - 0.5).mean(),
        "iqr": 0.5 + 1.5 * 1.349 * errors.std(),
    }
    assert chosen.value == pytest.approx(fallback[method])


def test_pot_recovers_an_exponential_tail_quantile() -> None:
    errors = np.random.default_rng(1).exponential(size=200_000)
    value = peaks_over_threshold(errors, risk=1e-4, initial_quantile=0.98)
    assert value == pytest.approx(-np.log(1e-4), rel=0.05)  # 9.21
    chosen = choose_threshold(errors, ThresholdConfig(method="pot", pot_risk=1e-4))
    assert chosen.method == "pot"
    assert chosen.value == pytest.approx(value)


def test_pot_tail_quantile_is_continuous_where_the_tail_shape_goes_to_zero() -> None:
    # Below |xi| = 1e-6 the exponential limit is used; it must meet the general form.
    values = {xi: tail_quantile(2.0, xi, 1.5, 0.02) for xi in (-1e-4, -1e-7, 0.0, 1e-7, 1e-4)}
    assert values[0.0] == pytest.approx(2.0 - 1.5 * np.log(0.02))
    assert values[0.0] == pytest.approx(values[1e-4], rel=1e-3)
    assert values[0.0] == pytest.approx(values[-1e-4], rel=1e-3)
    assert values[1e-7] == values[-1e-7] == values[0.0]


def test_pot_refuses_a_risk_beyond_the_fitted_tail() -> None:
    with pytest.raises(ValueError, match=r"pot_risk=0.2 must be below 1 - threshold.pot_init"):
        ThresholdConfig(method="pot", pot_risk=0.2, pot_initial_quantile=0.98)
    ThresholdConfig(method="quantile", pot_risk=0.2)  # unused by other methods
    # Ties at the initial threshold leave fewer peaks than its share.
    errors = np.r_[np.zeros(900), np.random.default_rng(0).exponential(size=100)]
    config = ThresholdConfig(method="pot", pot_risk=0.15, pot_initial_quantile=0.8)
    with pytest.raises(ThresholdError, match=r"share of validation errors above the initial"):
        choose_threshold(errors, config)


def test_pot_needs_a_tail_to_fit() -> None:
    with pytest.raises(ThresholdError, match="needs at least 10 validation errors"):
        choose_threshold(np.arange(100.0), ThresholdConfig(method="pot"))


def test_unknown_method_names_the_choices() -> None:
    with pytest.raises(ValueError, match="quantile"):
        ThresholdConfig(method="sigma")  # type: ignore[arg-type]


def test_every_method_the_config_accepts_has_a_rule() -> None:
    accepted = get_args(ThresholdConfig.model_fields["method"].annotation)
    errors = np.random.default_rng(0).exponential(size=2000)
    labels = (errors > np.quantile(errors, 0.95)).astype(int)
    values = {
        method: choose_threshold(errors, ThresholdConfig(method=method), labels).value
        for method in accepted
    }
    assert set(values) == set(accepted) and len(accepted) == 7
    assert len(set(values.values())) == len(values)  # each method its own rule


def test_pot_warns_when_the_tail_rests_on_few_peaks(caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(0)
    with caplog.at_level("WARNING", logger="aeops.scoring._threshold"):
        choose_threshold(rng.exponential(size=5_000), ThresholdConfig(method="pot"))
    assert not caplog.records  # 100 peaks
    with caplog.at_level("WARNING", logger="aeops.scoring._threshold"):
        choose_threshold(rng.exponential(size=1_000), ThresholdConfig(method="pot"))
    assert "rests on 20 validation errors above the 0.98 quantile" in caplog.text


def test_pot_warns_when_repeated_rows_make_the_tail_look_bounded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    errors = np.random.default_rng(0).exponential(size=2_000)
    with caplog.at_level("WARNING", logger="aeops.scoring._threshold"):
        choose_threshold(errors, ThresholdConfig(method="pot"))
    assert not caplog.records
    top_three = np.sort(errors)[-3:]
    tied = np.r_[errors, np.repeat(top_three, 8)]
    with caplog.at_level("WARNING", logger="aeops.scoring._threshold"):
        choose_threshold(tied, ThresholdConfig(method="pot"))
    assert "the fitted tail is bounded" in caplog.text


@pytest.mark.parametrize("risk", [1e-100, 1e-200])
def test_pot_refuses_a_threshold_beyond_any_float32_error(risk: float) -> None:
    # A shape-2 tail read at a tiny risk: ~1e207, or a Python float overflow.
    errors = np.random.default_rng(0).pareto(0.5, size=5_000)
    with pytest.raises(ThresholdError, match=rf"pot_risk={risk} reads the fitted tail"):
        choose_threshold(errors, ThresholdConfig(method="pot", pot_risk=risk))
    assert tail_quantile(1.0, 2.0, 1.0, 1e-200) == float("inf")


def test_quantile_warns_when_no_validation_error_would_lie_above_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    errors = np.random.default_rng(0).random(200)
    with caplog.at_level("WARNING", logger="aeops.scoring._threshold"):
        choose_threshold(errors[:20], ThresholdConfig(quantile=0.95))
    assert not caplog.records
    with caplog.at_level("WARNING", logger="aeops.scoring._threshold"):
        choose_threshold(errors[:10], ThresholdConfig(quantile=0.95))
    assert "with 10 validation errors" in caplog.text
    assert "use at least 20 validation rows" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="aeops.scoring._threshold"):  # 10 x 0.1 = 0.999...
        choose_threshold(errors[:10], ThresholdConfig(quantile=0.9))
    assert not caplog.records
