"""Pieces shared by the networks."""

from __future__ import annotations

from torch import nn

from aeops.models._config import ModelConfig

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
}


def activation_and_dropout(config: ModelConfig) -> nn.Module:
    """``model.activation``, then ``model.dropout`` when it is above 0, as one module.

    One module in the place of the activation: neither has parameters, so a network's
    parameter names do not depend on the dropout (weights saved with another load).
    """
    activation = ACTIVATIONS[config.activation]()
    if config.dropout == 0:
        return activation
    return nn.Sequential(activation, nn.Dropout(config.dropout))
