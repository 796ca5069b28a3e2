"""Kedro's config loader, where ``--params`` never replace a block of base's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.config import OmegaConfigLoader
from omegaconf import DictConfig


class ParamsAfterEnvLoader(OmegaConfigLoader):
    """``OmegaConfigLoader``, but a block only runtime parameters give the run
    environment does not replace base's.

    Kedro merges ``--params`` into base's parameters and into the run environment's
    separately, resolves each, and then lets each top-level block of the environment
    replace base's whole block. So ``kedro run --env=timeseries
    --params=sweep.n_trials=2`` gave the environment a ``sweep`` block of
    ``{n_trials: 2}`` that replaced base's, and its search space was lost. Here the
    environment's result keeps only the blocks its own files define; base's result
    already holds the runtime values. Everything else is Kedro's: each environment
    resolves on its own, with the runtime values, so interpolations behave as there.
    """

    _env_blocks: frozenset[str] = frozenset()

    def _resolve_from_raw_config(
        self,
        key: str,
        base_configs: dict[Path, DictConfig],
        env_configs: dict[Path, DictConfig],
        base_path: str,
        env_path: str,
        processed_files: set[Path],
    ) -> dict[str, Any]:
        if key == "parameters":
            self._env_blocks = frozenset(
                str(block) for config in env_configs.values() for block in config
            )
        return super()._resolve_from_raw_config(
            key, base_configs, env_configs, base_path, env_path, processed_files
        )

    def _merge_configs(
        self, config: dict[str, Any], env_config: dict[str, Any], key: str, env_path: str
    ) -> Any:
        if key == "parameters":
            env_config = {k: v for k, v in env_config.items() if k in self._env_blocks}
        return super()._merge_configs(config, env_config, key, env_path)
