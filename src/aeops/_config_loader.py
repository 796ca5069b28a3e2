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
    search space was lost. Here base's and the environment's files merge unresolved,
    the environment's blocks replacing base's as before; the runtime values are then
    merged in key by key, and everything resolves once, so interpolations
    (``${a}``, ``${runtime_params:x}``) see the runtime values, as in Kedro.
    """

    def _merge_and_resolve(self, key: str, config_per_file: dict[Path, DictConfig]) -> Any:
        if key != "parameters":
            return super()._merge_and_resolve(key, config_per_file)
        if not config_per_file:
            return {}
        merged = OmegaConf.unsafe_merge(*config_per_file.values())
        return OmegaConf.to_container(merged, resolve=False)

    def __getitem__(self, key: str) -> dict[str, Any]:
        config = super().__getitem__(key)
        if key != "parameters":
            return config
        merged = OmegaConf.merge(OmegaConf.create(config), self.runtime_params)
        return OmegaConf.to_container(merged, resolve=True)  # type: ignore[return-value]
