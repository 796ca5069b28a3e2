"""Multilayer perceptron encoder and decoder for tabular rows (B, F)."""

from __future__ import annotations

import itertools

from torch import nn

from aeops.models._config import ModelConfig
from aeops.models._registry import ModelConfigError, register_network
from aeops.models.networks._common import ACTIVATIONS


def _stack(widths: list[int], config: ModelConfig) -> nn.Sequential:
    """Linear layers through ``widths`` with activation (and dropout) between them."""
    layers: list[nn.Module] = []
    for index, (width_in, width_out) in enumerate(itertools.pairwise(widths)):
        layers.append(nn.Linear(width_in, width_out))
        if index < len(widths) - 2:
            layers.append(ACTIVATIONS[config.activation]())
            if config.dropout > 0:
                layers.append(nn.Dropout(config.dropout))
    return nn.Sequential(*layers)


@register_network("mlp")
def build_mlp(
    input_shape: tuple[int, ...], config: ModelConfig, code_dim: int
) -> tuple[nn.Module, nn.Module]:
    """Mirror-image MLP: F -> hidden_dims -> code_dim, and latent_dim -> reversed -> F.

    Raises:
        ValueError: if the input is not one axis of features.
    """
    if len(input_shape) != 1:
        raise ModelConfigError(
            f"model.architecture='mlp' takes rows of features (F,), got shape {input_shape}; "
            "use 'conv' for images or 'recurrent' for windows"
        )
    (n_features,) = input_shape
    hidden = list(config.hidden_dims)
    encoder = _stack([n_features, *hidden, code_dim], config)
    decoder = _stack([config.latent_dim, *reversed(hidden), n_features], config)
    return encoder, decoder
