"""Parameter blocks refuse values their libraries would choke on, naming the key."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from aeops.data import DataConfig
from aeops.pipelines._params import ParameterError, parse_params
from aeops.pipelines.generate.nodes import GenerateConfig
from aeops.pipelines.impute.nodes import ImputeConfig
from aeops.pipelines.sweep.nodes import check_space
from aeops.training import TrainingConfig
from aeops.training.sweep import SweepConfig


@pytest.mark.parametrize("config", [TrainingConfig, SweepConfig, ImputeConfig, GenerateConfig])
def test_seeds_are_what_numpy_torch_and_optuna_take(config: type[BaseModel]) -> None:
    assert config(seed=2**32 - 1).seed == 2**32 - 1  # type: ignore[attr-defined]
    for bad in (-1, 2**32, 2**64):
        with pytest.raises(ValidationError, match=r"seed\n"):
            config(seed=bad)


@pytest.mark.parametrize("value", [float("inf"), float("nan"), 0.0])
def test_a_generation_temperature_is_a_finite_positive_number(value: Any) -> None:
    with pytest.raises(ValidationError, match="temperature"):
        GenerateConfig(temperature=value)


@pytest.mark.parametrize(
    "space",
    [
        # Valid together, though min_lr 0.005 is above the base block's lr 0.001.
        {"training.lr": [0.01, 0.1], "training.lr_schedule.min_lr": [0.005]},
        {"model.noise.kind": ["gaussian"], "model.noise.level": {"low": 0.1, "high": 2.0}},
        {"model.trim_fraction": {"low": 0.0, "high": 0.5, "step": 0.2}},  # 0.5 unreachable
    ],
)
def test_a_sweep_space_is_checked_field_by_field(space: dict[str, Any]) -> None:
    check_space(SweepConfig(space=space))


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"model.latent_dim": {"low": 0, "high": 4}}, r"can give 0, which model.latent_dim"),
        ({"model.latent_dim": {"low": 2.0, "high": 16.0}}, r"fractional part"),
        ({"model.latnt_dim": [2]}, r"the model block has no key 'latnt_dim'"),
        # The registry check is the field's validator, not its type: it was left to
        # the trial that drew the value, after the others had trained.
        ({"model.kind": ["vanilla", "vea"]}, r"can give 'vea', which model.kind .*registered"),
        ({"model.architecture": ["mlp", "transformer"]}, r"'transformer', which model.arch"),
    ],
)
def test_a_sweep_space_value_no_trial_could_take_is_refused(
    space: dict[str, Any], message: str
) -> None:
    with pytest.raises(ParameterError, match=message):
        check_space(SweepConfig(space=space))


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"low": 0.1, "high": 0.01}, "sweep.space: 'training.lr': low 0.1 is above high 0.01"),
        ({"low": 0.1}, "sweep.space: 'training.lr': high: Field required"),
        (5, "sweep.space: 'training.lr' is 5: give a list of choices ([2, 4, 8]) or a range"),
    ],
)
def test_a_sweep_space_entry_is_named_once_by_its_shape(entry: Any, message: str) -> None:
    assert SweepConfig(space={"training.lr": (0.01, 0.1)}).space == {"training.lr": [0.01, 0.1]}
    # pydantic named each mistake twice, against both kinds of entry, in its own terms
    # ("training.lr.list[any]: Input should be a valid list", "function-after[...]").
    with pytest.raises(ParameterError) as raised:
        parse_params(SweepConfig, {"space": {"training.lr": entry}}, "sweep")
    (line,) = str(raised.value).splitlines()[1:]
    assert line.strip().startswith(message), line


@pytest.mark.parametrize(
    ("block", "message"),
    [
        # These were caught only by the suite's builder, after the MLflow run had opened.
        ({"bounds": {"mean_radius": [30, 1]}}, r"data\.bounds: .*'mean_radius'.* inverted"),
        ({"feature_columns": ["a", "b", "a"]}, r"data\.feature_columns: .*\['a'\] more than once"),
    ],
)
def test_a_data_block_that_no_suite_could_check_is_refused_when_parsed(
    block: dict[str, Any], message: str
) -> None:
    with pytest.raises(ParameterError, match=message):
        parse_params(DataConfig, block, "data")


@pytest.mark.parametrize(
    ("config", "block", "suggestion"),
    [
        (TrainingConfig, {"epoch": 3}, "training.epoch: .* did you mean 'epochs'"),
        (TrainingConfig, {"lr_schedule": {"kindd": "cosine"}}, "kindd: .* did you mean 'kind'"),
    ],
)
def test_a_misspelled_key_gets_the_closest_name(
    config: type[BaseModel], block: dict[str, Any], suggestion: str
) -> None:
    with pytest.raises(ParameterError, match=suggestion):
        parse_params(config, block, "training")


def test_an_empty_feature_list_reads_as_null_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # It meant every numeric column, silently; bundles that stored it must still load.
    with caplog.at_level(logging.WARNING, logger="aeops.data._config"):
        config = parse_params(DataConfig, {"feature_columns": []}, "data")
    assert config.feature_columns is None
    assert "data.feature_columns: [] is read as null" in caplog.text
