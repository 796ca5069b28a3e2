"""Nodes of the ``score`` pipeline."""

from __future__ import annotations

from typing import Any

from aeops.embedding import EmbedJob, TableSource
from aeops.pipelines._batch_nodes import plan_batch_job


def plan_scores(
    score_input: TableSource, score: dict[str, Any], registry: dict[str, Any]
) -> EmbedJob:
    """Plan scoring ``score_input`` with ``score.model_uri`` (default: the champion)."""
    return plan_batch_job(score_input, score, registry, output="scores", area="score")
