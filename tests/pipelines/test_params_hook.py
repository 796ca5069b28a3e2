"""The check of ``--params`` against the parameter files, on Kedro's own config loader."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from kedro.config import OmegaConfigLoader

from aeops.hooks import RefuseUnknownParameters

CONF = Path(__file__).resolve().parents[2] / "conf"


def _check(runtime_params: dict[str, Any]) -> None:
    loader = OmegaConfigLoader(
        conf_source=str(CONF),
        base_env="base",
        default_run_env="local",
        runtime_params=runtime_params,
    )
    RefuseUnknownParameters().after_context_created(SimpleNamespace(config_loader=loader))
    assert loader.runtime_params == runtime_params  # put back for the run


def test_a_misspelled_block_is_refused_with_the_closest_name() -> None:
    with pytest.raises(ValueError, match=r"'trainig' \(did you mean 'training'\?\)"):
        _check({"trainig": {"epochs": 5}})


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"training": {"epochs": 5}, "evaluate": {"model_uri": "models:/m/2"}},
        {"out_dir": "/data/run-7"},  # no block's name: the catalog may read it
    ],
)
def test_blocks_and_other_keys_pass(params: dict[str, Any]) -> None:
    _check(params)
