"""Encoder/decoder networks, one module per ``model.architecture``."""

from aeops.models.networks import mlp

__all__ = ["mlp"]
