"""``score``: a registered model and a dataset to reconstruction errors and anomaly flags."""

from aeops.pipelines.score.pipeline import create_pipeline

__all__ = ["create_pipeline"]
