"""Nodes of the ``embed`` pipeline."""

from __future__ import annotations

from typing import Any

from aeops.embedding import EmbedJob, TableSource
from aeops.pipelines._batch_nodes import plan_batch_job


def plan_embeddings(
    embed_input: TableSource, embed: dict[str, Any], registry: dict[str, Any]
) -> EmbedJob:
    """Plan embedding ``embed_input`` with ``embed.model_uri`` (default: the champion)."""
    return plan_batch_job(embed_input, embed, registry, output="embeddings", area="embed")
