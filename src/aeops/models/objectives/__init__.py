"""Training objectives, one module per ``model.kind``."""

from aeops.models.objectives import vanilla

__all__ = ["vanilla"]
