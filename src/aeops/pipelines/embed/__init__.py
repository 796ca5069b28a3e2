"""``embed``: a registered model and a dataset to an embeddings Parquet."""

from aeops.pipelines.embed.pipeline import create_pipeline

__all__ = ["create_pipeline"]
