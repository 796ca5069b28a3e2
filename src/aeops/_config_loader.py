"""Kedro's config loader, with ``--params`` applied once, after the run environment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.config import OmegaConfigLoader
from omegaconf import DictConfig, OmegaConf


class ParamsAfterEnvLoader(OmegaConfigLoader):
    """``OmegaConfigLoader`` whose runtime parameters land on the merged parameters.

    Kedro merges ``--params`` into base's parameters and into the run environment's
    separately, and then lets each top-level block of the environment replace base's
    whole block. So ``kedro run --env=timeseries --params=sweep.n_trials=2`` gave the
    environment a ``sweep`` block of ``{n_trials: 2}`` that replaced base's, and its
    search space was lost. Here the environment's own files replace base's blocks as
    before, and the runtime values are merged into the result, key by key.
    """

    def _merge_and_resolve(self, key: str, config_per_file: dict[Path, DictConfig]) -> Any:
        if key != "parameters" or not self.runtime_params:
            return super()._merge_and_resolve(key, config_per_file)
        runtime_params, self.runtime_params = self.runtime_params, {}
        try:
            return super()._merge_and_resolve(key, config_per_file)
        finally:
            self.runtime_params = runtime_params

    def __getitem__(self, key: str) -> dict[str, Any]:
        config = super().__getitem__(key)
        if key != "parameters" or not self.runtime_params:
            return config
        merged = OmegaConf.merge(OmegaConf.create(config), self.runtime_params)
        return OmegaConf.to_container(merged, resolve=True)  # type: ignore[return-value]
