"""Tiny data and models for the fit loop.

Self-contained on purpose: ``bench/gpu_check.sh`` runs these tests with
``--confcutdir=tests/training`` on a machine without kedro or mlflow, so nothing here
may need the project-wide ``tests/conftest.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor

from aeops.models import Autoencoder, LossOutput, ModelConfig, build_model
from aeops.training import TrainingConfig

N_FEATURES = 10
_MIXING = np.random.default_rng(99).normal(size=(2, N_FEATURES))


def plane_data(n: int = 256, seed: int = 0) -> np.ndarray:
    """Rows on a 2-D plane in 10-D: a 2-unit code can reconstruct them."""
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, 2)) @ _MIXING).astype(np.float32)


def mlp_model(seed: int = 0, dropout: float = 0.2) -> Autoencoder:
    """A small MLP autoencoder (dropout on: training draws random masks)."""
    torch.manual_seed(seed)
    config = ModelConfig(architecture="mlp", latent_dim=2, hidden_dims=(16,), dropout=dropout)
    return build_model(config, (N_FEATURES,))


class NoisyInputAutoencoder(Autoencoder):
    """Corrupts its training inputs with Gaussian noise drawn from torch's global RNG.

    A resumed run only matches an uninterrupted one if the RNG state is checkpointed,
    so this model makes that requirement testable.
    """

    def loss(self, x: Tensor) -> LossOutput:
        noisy = x + 0.1 * torch.randn_like(x) if self.training else x
        reconstruction = self.reconstruction_loss(noisy, target=x).mean()
        return LossOutput(total=reconstruction, terms={"reconstruction": reconstruction})


def noisy_model(seed: int = 0) -> Autoencoder:
    """A :class:`NoisyInputAutoencoder` on the MLP network, without dropout."""
    base = mlp_model(seed, dropout=0.0)
    return NoisyInputAutoencoder(base.encoder, base.decoder, base.config)


MODEL_FACTORIES: dict[str, Callable[[int], Autoencoder]] = {
    "mlp_dropout": mlp_model,
    "noisy_input": noisy_model,
}


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    """Whether two modules hold bitwise-identical state dicts."""
    state_a, state_b = a.state_dict(), b.state_dict()
    return state_a.keys() == state_b.keys() and all(
        torch.equal(state_a[name], state_b[name]) for name in state_a
    )


@pytest.fixture
def plane() -> Callable[..., np.ndarray]:
    """The :func:`plane_data` factory."""
    return plane_data


@pytest.fixture
def make_model() -> Callable[..., Autoencoder]:
    """Build a test model by name (see :data:`MODEL_FACTORIES`) and seed."""

    def build(name: str = "mlp_dropout", seed: int = 0) -> Autoencoder:
        return MODEL_FACTORIES[name](seed)

    return build


@pytest.fixture
def weights_equal() -> Callable[[torch.nn.Module, torch.nn.Module], bool]:
    """The :func:`same_weights` comparison."""
    return same_weights


@pytest.fixture
def quick_config(tmp_path: Path) -> TrainingConfig:
    """A few epochs of small batches, checkpoints under the test's own folder."""
    return TrainingConfig(
        epochs=6,
        batch_size=32,
        lr=1e-2,
        seed=5,
        checkpoint_dir=str(tmp_path),
        progress=False,
    )
