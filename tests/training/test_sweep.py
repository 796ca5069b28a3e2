"""The sweep's search space, sampling and scorekeeping (no training)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from aeops.models import ModelConfig
from aeops.training import TrainingDivergedError
from aeops.training.sweep import (
    RangeSpec,
    SweepConfig,
    apply_overrides,
    check_comparable_scores,
    fit_space_to_input,
    improves,
    run_sweep,
)

# The dev install has Optuna (the `sweep` extra); bench/gpu_check.sh runs tests/training
# on a bare GPU image without it.
pytest.importorskip("optuna")

SPACE: dict[str, Any] = {
    "model.kind": ["vanilla", "vae"],
    "model.latent_dim": {"low": 2, "high": 16, "log": True},
    "model.hidden_dims": [[32, 16], [64]],
    "model.noise.level": {"low": 0.05, "high": 0.3},
    "training.lr": {"low": 1e-4, "high": 1e-2, "log": True},
}


def test_overrides_reach_nested_keys_of_their_own_block_only() -> None:
    model = {"kind": "vanilla", "noise": {"kind": "gaussian", "level": 0.1}}
    params = {"model.kind": "vae", "model.noise.level": 0.3, "training.lr": 0.5}
    updated = apply_overrides(model, "model", params)
    assert updated == {"kind": "vae", "noise": {"kind": "gaussian", "level": 0.3}}
    assert model["noise"]["level"] == 0.1  # the input is not changed
    assert apply_overrides({"lr": 1.0}, "training", params) == {"lr": 0.5}


def test_ranges_sample_ints_or_floats_and_refuse_bad_bounds() -> None:
    assert RangeSpec(low=2, high=16).integer
    assert not RangeSpec(low=0.1, high=1).integer
    assert not RangeSpec(low=2, high=16, type="float").integer
    with pytest.raises(ValidationError, match=r"low 5 is above high 1"):
        RangeSpec(low=5, high=1)
    with pytest.raises(ValidationError, match="log range needs low > 0"):
        RangeSpec(low=0, high=1, log=True)
    # As written in YAML: 1.0 is a float, so the range is too.
    assert not RangeSpec(**yaml.safe_load("{low: 1.0, high: 4.0}")).integer
    assert RangeSpec(**yaml.safe_load("{low: 1, high: 4}")).integer
    with pytest.raises(ValidationError, match=r"an int range needs a whole step, got 2\.5"):
        RangeSpec(low=0, high=10, step=2.5)


def test_space_keys_must_name_model_or_training_parameters() -> None:
    with pytest.raises(ValidationError, match=r"'data\.split' is not a sweepable key"):
        SweepConfig(space={"data.split": [0.1, 0.2]})
    with pytest.raises(ValidationError, match="search space is empty"):
        SweepConfig(space={})
    with pytest.raises(ValidationError, match=r"'model\.kind' lists no choices"):
        SweepConfig(space={"model.kind": []})


@pytest.mark.parametrize(
    ("space", "base", "refused"),
    [
        ({"model.kind": ["vanilla", "vae"]}, {"anomaly_score": "elbo"}, "model.kind"),
        ({"model.reconstruction_loss": ["mse", "l1"]}, {}, "model.reconstruction_loss"),
        ({"model.anomaly_score": ["elbo", "reconstruction"]}, {"kind": "vae"}, "model.anomaly"),
        ({"model.kind": ["vanilla", "vae"]}, {"anomaly_score": "reconstruction"}, None),
        ({"model.anomaly_score": ["elbo", "reconstruction"]}, {}, None),  # no VAE: unused
        ({"model.kind": ["vanilla", "sparse", "denoising"]}, {}, None),
        ({"model.reconstruction_loss": ["l1"]}, {}, None),
    ],
)
def test_mean_errors_are_compared_only_in_one_unit(
    space: dict[str, Any], base: dict[str, Any], refused: str | None
) -> None:
    # A trial scoring by l1 (or a VAE by its ELBO) won on the unit, not on the fit.
    model = ModelConfig(**base)
    check_comparable_scores(SweepConfig(objective="validation_auroc", space=space), model)
    check = SweepConfig(objective="validation_error", space=space)
    if refused is None:
        check_comparable_scores(check, model)
        return
    with pytest.raises(ValueError, match=rf"different units across .*'{refused}") as caught:
        check_comparable_scores(check, model)
    if refused == "model.kind":  # the easiest way out, with conf/base's elbo
        assert "model.anomaly_score: reconstruction" in str(caught.value)


def _toy_objective(params: dict[str, Any]) -> float:
    """Best at latent_dim 8 and the vae, whatever else was sampled."""
    return -abs(params["model.latent_dim"] - 8) + (1.0 if params["model.kind"] == "vae" else 0.0)


def test_a_sweep_samples_the_space_keeps_the_best_and_repeats_with_its_seed() -> None:
    config = SweepConfig(n_trials=15, seed=3, space=SPACE)
    seen: list[dict[str, Any]] = []

    def evaluate(number: int, params: dict[str, Any]) -> float:
        assert number == len(seen)
        seen.append(params)
        return _toy_objective(params)

    outcome = run_sweep(config, evaluate)
    assert len(outcome.trials) == 15 and outcome.failed == 0
    for params in seen:
        assert params["model.kind"] in ("vanilla", "vae")
        assert isinstance(params["model.latent_dim"], int) and 2 <= params["model.latent_dim"] <= 16
        assert params["model.hidden_dims"] in ([32, 16], [64])
        assert 0.05 <= params["model.noise.level"] <= 0.3
        assert 1e-4 <= params["training.lr"] <= 1e-2
    assert outcome.best.value == max(_toy_objective(p) for p in seen)
    assert outcome.best.params == seen[outcome.best.number]
    again = run_sweep(config, lambda number, params: _toy_objective(params))
    assert [t.params for t in again.trials] == seen


def test_minimising_objectives_pick_the_lowest() -> None:
    config = SweepConfig(n_trials=6, objective="validation_error", space=SPACE)
    outcome = run_sweep(config, lambda number, params: params["training.lr"])
    assert outcome.best.value == min(t.value for t in outcome.trials)


@pytest.mark.parametrize("direction", ["validation_auroc", "validation_error"])
def test_equal_scores_that_differ_in_the_last_bit_go_to_the_first_trial(direction: str) -> None:
    # 69/71 as two AUROC computations gave it: 0.9718309859154929 and 0.971830985915493.
    scores = [0.5, 0.9718309859154929, 0.971830985915493, 0.9]
    if direction == "validation_error":
        scores = [1.0, 0.0718309859154929, 0.07183098591549289, 0.2]
    config = SweepConfig(n_trials=4, objective=direction, space=SPACE)
    outcome = run_sweep(config, lambda number, params: scores[number])
    assert outcome.best.number == 1
    assert improves(0.9718309859154931, 0.971830985915493, "maximize") is False
    assert improves(0.97183098592, 0.971830985915493, "maximize") is True


def test_diverged_trials_fail_alone_and_other_errors_stop_the_sweep() -> None:
    def diverge_every_other(number: int, params: dict[str, Any]) -> float:
        if number % 2:
            raise TrainingDivergedError("loss is nan at epoch 3")
        return float(number)

    outcome = run_sweep(SweepConfig(n_trials=4, space=SPACE), diverge_every_other)
    assert outcome.failed == 2
    assert [t.number for t in outcome.trials] == [0, 2]

    def broken(number: int, params: dict[str, Any]) -> float:
        raise ValueError("model.latent_dim=64 is larger than the input")

    with pytest.raises(ValueError, match="larger than the input"):
        run_sweep(SweepConfig(n_trials=3, space=SPACE), broken)

    def always_diverge(number: int, params: dict[str, Any]) -> float:
        raise TrainingDivergedError("nan")

    with pytest.raises(RuntimeError, match="none of the 2 sweep trials finished"):
        run_sweep(SweepConfig(n_trials=2, space=SPACE), always_diverge)


def test_latent_dims_the_input_cannot_take_leave_the_space(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ranged = SweepConfig(space={"model.latent_dim": {"low": 2, "high": 16, "log": True}})
    narrowed = fit_space_to_input(ranged, (6,))
    assert narrowed.space["model.latent_dim"] == RangeSpec(low=2, high=5, log=True)
    assert "narrowed to 2 to 5" in caplog.text
    assert fit_space_to_input(ranged, (16, 3)) is ranged  # 48 values: room for 16

    listed = SweepConfig(space={"model.latent_dim": [2, 8, 4, 12], "training.lr": [0.01]})
    assert fit_space_to_input(listed, (1, 8)).space == {
        "model.latent_dim": [2, 4],
        "training.lr": [0.01],
    }
    for space in ({"low": 6, "high": 16}, [6, 8]):
        with pytest.raises(ValueError, match="narrower than the 6 input values of one sample"):
            fit_space_to_input(SweepConfig(space={"model.latent_dim": space}), (6,))
    # A range left with one value samples it.
    one = fit_space_to_input(SweepConfig(space={"model.latent_dim": {"low": 5, "high": 9}}), (6,))
    sampled = run_sweep(
        SweepConfig(n_trials=2, space=one.space), lambda _, params: params["model.latent_dim"]
    )
    assert [trial.params["model.latent_dim"] for trial in sampled.trials] == [5, 5]
