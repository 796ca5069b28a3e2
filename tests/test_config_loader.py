"""``--params`` with a conf environment: applied to the merged parameters, on the
project's own conf and Kedro's loader."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kedro.config import OmegaConfigLoader

from aeops import settings
from aeops._config_loader import ParamsAfterEnvLoader

CONF = Path(__file__).resolve().parents[1] / "conf"


def _parameters(loader: type[OmegaConfigLoader], env: str, runtime: dict[str, Any]) -> Any:
    return loader(
        conf_source=str(CONF), env=env, runtime_params=runtime, **settings.CONFIG_LOADER_ARGS
    )["parameters"]


def test_the_project_loads_its_config_with_this_loader() -> None:
    assert settings.CONFIG_LOADER_CLASS is ParamsAfterEnvLoader


def test_a_runtime_value_for_a_block_the_environment_lacks_keeps_base_s_block() -> None:
    base = _parameters(ParamsAfterEnvLoader, "local", {})
    runtime = {"sweep": {"n_trials": 2}, "model": {"latent_dim": 4}}
    params = _parameters(ParamsAfterEnvLoader, "timeseries", runtime)
    # Kedro's own loader gave the environment a sweep block of {n_trials: 2}.
    assert _parameters(OmegaConfigLoader, "timeseries", runtime)["sweep"] == {"n_trials": 2}
    assert params["sweep"] == {**base["sweep"], "n_trials": 2}
    assert params["sweep"]["space"]  # the search space survives
    # The environment's own blocks still replace base's whole block.
    assert params["model"]["cell"] == "lstm"
    assert params["model"]["latent_dim"] == 4
    assert params["data"]["kind"] == "timeseries"
    assert params["model"]["hidden_dims"] == [32]  # the environment's, not base's


@pytest.mark.parametrize(
    "runtime",
    [{}, {"training": {"epochs": 3}, "threshold": {"method": "pot"}}, {"out_dir": "/tmp/x"}],
)
def test_without_an_environment_s_parameters_it_matches_kedro_s_loader(
    runtime: dict[str, Any],
) -> None:
    ours = _parameters(ParamsAfterEnvLoader, "local", runtime)
    assert ours == _parameters(OmegaConfigLoader, "local", runtime)


def test_interpolations_see_the_runtime_values_as_in_kedro(tmp_path: Path) -> None:
    # Resolving each environment before the runtime values were merged lost them.
    (tmp_path / "base").mkdir()
    (tmp_path / "local").mkdir()
    (tmp_path / "base" / "parameters.yml").write_text(
        "a: 1\nb: ${a}\nc: ${runtime_params:foo, 1}\nescaped: \\${x}\nblock: {k: 1}\n"
    )
    (tmp_path / "local" / "parameters.yml").write_text("d: ${runtime_params:foo}\n")
    runtime = {"a": 5, "foo": 7, "block": {"k": 2}}
    loaded = {
        loader: loader(
            conf_source=str(tmp_path), runtime_params=runtime, **settings.CONFIG_LOADER_ARGS
        )["parameters"]
        for loader in (ParamsAfterEnvLoader, OmegaConfigLoader)
    }
    assert loaded[ParamsAfterEnvLoader] == loaded[OmegaConfigLoader]
    assert loaded[ParamsAfterEnvLoader] == {
        "a": 5,
        "b": 5,
        "c": 7,
        "escaped": "${x}",
        "block": {"k": 2},
        "d": 7,
        "foo": 7,  # a runtime value no file names is a parameter too
    }


def test_each_environment_resolves_on_its_own_as_in_kedro(tmp_path: Path) -> None:
    # A version that resolved base and the environment together let base's ${a} see
    # the environment's a, and failed on ${model.d} once the environment's model
    # block had replaced base's.
    for env in ("base", "timeseries"):
        (tmp_path / env).mkdir()
    (tmp_path / "base" / "parameters.yml").write_text(
        "a: 1\nb: ${a}\nmodel: {d: 8}\nsweep: {x: '${model.d}', n: 5}\n"
    )
    (tmp_path / "timeseries" / "parameters.yml").write_text("a: 2\nmodel: {e: 1}\n")

    def load(loader: type[OmegaConfigLoader], runtime: dict[str, Any]) -> Any:
        return loader(
            conf_source=str(tmp_path),
            env="timeseries",
            runtime_params=runtime,
            **settings.CONFIG_LOADER_ARGS,
        )["parameters"]

    for runtime in ({}, {"training": {"epochs": 3}}, {"model": {"e": 4}}):
        assert load(ParamsAfterEnvLoader, runtime) == load(OmegaConfigLoader, runtime)
    assert load(ParamsAfterEnvLoader, {}) == {
        "a": 2,
        "b": 1,
        "model": {"e": 1},
        "sweep": {"x": 8, "n": 5},
    }
    # The one difference: a block only --params give the environment.
    assert load(OmegaConfigLoader, {"sweep": {"n": 2}})["sweep"] == {"n": 2}
    assert load(ParamsAfterEnvLoader, {"sweep": {"n": 2}})["sweep"] == {"x": 8, "n": 2}
