"""``sweep``: the train pipeline with an Optuna search in place of one fit."""

from aeops.pipelines.sweep.pipeline import create_pipeline

__all__ = ["create_pipeline"]
