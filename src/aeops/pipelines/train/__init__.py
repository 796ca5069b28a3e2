"""``train``: ingest, validate, split and scale, fit, evaluate, log and register."""

from aeops.pipelines.train.pipeline import create_pipeline

__all__ = ["create_pipeline"]
