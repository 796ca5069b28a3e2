"""Project pipelines: one folder under ``pipelines/`` each; ``train`` is the default."""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines.

    Returns:
        A mapping from pipeline names to ``Pipeline`` objects.
    """
    pipelines = find_pipelines(raise_errors=True)
    # find_pipelines loads only the pipelines a run asks for, so `train` may be absent.
    if "train" in pipelines:
        pipelines["__default__"] = pipelines["train"]
    return pipelines
