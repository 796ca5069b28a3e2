"""Encoder/decoder networks, one module per ``model.architecture``."""

from aeops.models.networks import conv, mlp, recurrent

__all__ = ["conv", "mlp", "recurrent"]
