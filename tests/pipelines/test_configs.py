"""Parameter blocks refuse values their libraries would choke on, naming the key."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from aeops.pipelines.generate.nodes import GenerateConfig
from aeops.pipelines.impute.nodes import ImputeConfig
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
