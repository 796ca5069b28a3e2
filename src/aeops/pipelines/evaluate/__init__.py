"""``evaluate``: re-evaluate a registered model on a dataset, as a new MLflow run."""

from aeops.pipelines.evaluate.pipeline import create_pipeline

__all__ = ["create_pipeline"]
