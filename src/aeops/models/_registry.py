"""Registries of objectives (``model.kind``) and networks (``model.architecture``)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, TypeVar

import torch
from torch import nn

if TYPE_CHECKING:
    from aeops.models._config import ModelConfig
    from aeops.models._contract import Autoencoder


class ModelConfigError(ValueError):
    """A model setting that does not fit the data or the chosen network; the message
    names the setting and what would fit."""


class NetworkFactory(Protocol):
    """Builds an (encoder, decoder) pair for inputs of ``input_shape`` (no batch axis).

    The encoder maps (B, *input_shape) to (B, code_dim); the decoder maps
    (B, latent_dim) back to (B, *input_shape).
    """

    def __call__(
        self, input_shape: tuple[int, ...], config: ModelConfig, code_dim: int
    ) -> tuple[nn.Module, nn.Module]: ...


MODEL_REGISTRY: dict[str, type[Autoencoder]] = {}
NETWORK_REGISTRY: dict[str, NetworkFactory] = {}

_M = TypeVar("_M", bound="type[Autoencoder]")
_N = TypeVar("_N", bound=NetworkFactory)


def register_model(kind: str) -> Callable[[_M], _M]:
    """Class decorator that makes an :class:`Autoencoder` subclass ``model.kind=kind``."""

    def decorator(cls: _M) -> _M:
        if kind in MODEL_REGISTRY:
            raise ValueError(f"model.kind={kind!r} is already registered")
        MODEL_REGISTRY[kind] = cls
        return cls

    return decorator


def register_network(architecture: str) -> Callable[[_N], _N]:
    """Function decorator that makes a network factory ``model.architecture=architecture``."""

    def decorator(factory: _N) -> _N:
        if architecture in NETWORK_REGISTRY:
            raise ValueError(f"model.architecture={architecture!r} is already registered")
        NETWORK_REGISTRY[architecture] = factory
        return factory

    return decorator


def build_model(
    config: ModelConfig, input_shape: tuple[int, ...], seed: int | None = None
) -> Autoencoder:
    """Instantiate the autoencoder that ``config`` describes for inputs of ``input_shape``.

    Args:
        config: a validated model config whose ``architecture`` is set
            (see :func:`aeops.models.resolve_architecture`).
        input_shape: shape of one sample, without the batch axis, e.g. ``(F,)``.
        seed: draws the initial weights from torch's generator seeded with it, and
            leaves the global random state as it was; None draws them from the global
            state. ``training.seed`` does not reach the weights otherwise: ``fit``
            seeds the batch order and noise, after the model exists.

    Returns:
        An untrained :class:`Autoencoder` on the CPU.

    Raises:
        ModelConfigError: if the architecture is unset or the sizes do not fit the input.
    """
    if config.architecture is None:
        choices = ", ".join(sorted(NETWORK_REGISTRY))
        raise ModelConfigError(
            f"model.architecture is not set; choose one of: {choices}, or take the data "
            "kind's with config.model_copy(update={'architecture': "
            "resolve_architecture(config, data_kind)})"
        )
    for key, value, registry in (
        ("kind", config.kind, MODEL_REGISTRY),
        ("architecture", config.architecture, NETWORK_REGISTRY),
    ):
        if value not in registry:
            choices = ", ".join(sorted(registry))
            raise ModelConfigError(
                f"model.{key}={value!r} is not registered; choose one of: {choices}"
            )
    n_values = math.prod(input_shape)
    if config.latent_dim >= n_values:
        raise ModelConfigError(
            f"model.latent_dim={config.latent_dim} must be smaller than the {n_values} input "
            f"values of one sample (shape {list(input_shape)}); a code as wide as the input "
            "can copy it"
        )
    model_cls = MODEL_REGISTRY[config.kind]
    factory = NETWORK_REGISTRY[config.architecture]
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:  # the CPU generator only: torch.manual_seed seeds GPUs too
            torch.random.default_generator.manual_seed(seed)
        code_width = config.latent_dim * model_cls.code_multiplier
        encoder, decoder = factory(input_shape, config, code_width)
        return model_cls(encoder, decoder, config)
