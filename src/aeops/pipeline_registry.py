"""Project pipelines: one folder under ``pipelines/`` each; ``train`` is the default."""

from __future__ import annotations

import re
from importlib import resources

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

_MODULE = re.compile(r"'aeops\.pipelines\.(?P<name>[^']+)' module")


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines.

    Returns:
        A mapping from pipeline names to ``Pipeline`` objects.

    Raises:
        KeyError: for a requested pipeline that does not exist, which ``kedro run``
            reports as "Failed to find the pipeline named ..." with the closest names.
            Kedro's discovery reports it as a failed import of a module that is not
            there, which sent users looking for a broken install.
    """
    try:
        pipelines = find_pipelines(raise_errors=True)
    except ImportError as error:
        # Kedro reports a name with no folder as a failed import of its module.
        match = _MODULE.search(str(error))
        if match is None or match["name"] in pipeline_names():
            raise  # a real pipeline that does not import: its own error says why
        # Kedro turns the KeyError into its own message, with the closest names.
        raise KeyError(f"no pipeline named {match['name']!r}") from None
    # find_pipelines loads only the pipelines a run asks for, so `train` may be absent.
    if "train" in pipelines:
        pipelines["__default__"] = pipelines["train"]
    return pipelines


def pipeline_names() -> list[str]:
    """The project's pipelines: the folders under ``aeops/pipelines``."""
    folder = resources.files("aeops.pipelines")
    return sorted(
        entry.name
        for entry in folder.iterdir()
        if entry.is_dir() and not entry.name.startswith(("_", "."))
    )
