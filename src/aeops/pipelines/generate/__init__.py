"""``generate``: synthetic rows, images or windows sampled from a registered VAE."""

from aeops.pipelines.generate.pipeline import create_pipeline

__all__ = ["create_pipeline"]
