"""``impute``: missing values filled by a registered autoencoder (best: a VAE)."""

from aeops.pipelines.impute.pipeline import create_pipeline

__all__ = ["create_pipeline"]
