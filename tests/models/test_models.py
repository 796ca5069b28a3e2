from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from aeops.models import MODEL_REGISTRY, NETWORK_REGISTRY, ModelConfig, build_model

N_FEATURES = 12


def _model(kind: str, **overrides: object) -> torch.nn.Module:
    config = ModelConfig(kind=kind, architecture="mlp", latent_dim=3, hidden_dims=(8,), **overrides)
    return build_model(config, (N_FEATURES,))


@pytest.mark.parametrize("kind", sorted(MODEL_REGISTRY))
def test_every_kind_embeds_scores_and_trains_with_finite_loss(kind: str) -> None:
    torch.manual_seed(0)
    model = _model(kind)
    x = torch.randn(5, N_FEATURES)
    z, errors = model.score(x)
    assert z.shape == (5, 3)
    assert errors.shape == (5,)
    loss = model.loss(x)
    assert torch.isfinite(loss.total)
    loss.total.backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("kind", sorted(MODEL_REGISTRY))
def test_embedding_and_score_are_deterministic(kind: str) -> None:
    model = _model(kind).eval()
    x = torch.randn(7, N_FEATURES)
    first, second = model.score(x), model.score(x)
    assert torch.equal(first[0], second[0])
    assert torch.equal(first[1], second[1])


def test_vanilla_loss_is_the_mean_squared_reconstruction_error() -> None:
    model = _model("vanilla").eval()  # no dropout, so both sides see the same network
    x = torch.randn(9, N_FEATURES)
    expected = F.mse_loss(model.reconstruct(x), x)
    assert torch.allclose(model.loss(x).total, expected)


def test_score_is_per_row_mean_error_of_the_reconstruction() -> None:
    model = _model("vanilla", reconstruction_loss="l1").eval()
    x = torch.randn(4, N_FEATURES)
    _, errors = model.score(x)
    expected = (model.reconstruct(x) - x).abs().mean(dim=1)
    assert torch.allclose(errors, expected)


def test_bce_reconstruction_is_a_probability() -> None:
    model = _model("vanilla", reconstruction_loss="bce")
    recon = model.reconstruct(torch.rand(3, N_FEATURES))
    assert recon.min() >= 0 and recon.max() <= 1


def test_unknown_kind_names_the_choices() -> None:
    with pytest.raises(
        ValueError, match=r"model.kind='vea' is not registered; choose one of: .*vanilla"
    ):
        ModelConfig(kind="vea")


def test_unknown_architecture_names_the_choices() -> None:
    with pytest.raises(ValueError, match=r"model.architecture='transformer' is not registered"):
        ModelConfig(architecture="transformer")


def test_typo_in_a_key_is_an_error_not_a_default() -> None:
    with pytest.raises(ValueError, match="latent_dimm"):
        ModelConfig(latent_dimm=4)  # type: ignore[call-arg]


def test_latent_dim_must_be_narrower_than_the_input() -> None:
    config = ModelConfig(architecture="mlp", latent_dim=N_FEATURES)
    with pytest.raises(ValueError, match=r"latent_dim=12 must be smaller than .* \(12\)"):
        build_model(config, (N_FEATURES,))


def test_mlp_rejects_images() -> None:
    with pytest.raises(ValueError, match="use 'conv' for images"):
        build_model(ModelConfig(architecture="mlp"), (1, 28, 28))


def test_an_architecture_not_yet_registered_is_named() -> None:
    config = ModelConfig.model_construct(kind="vanilla", architecture="transformer", latent_dim=2)
    with pytest.raises(ValueError, match=r"model\.architecture='transformer' is not registered"):
        build_model(config, (1, 8, 8))


def test_registries_hold_the_built_ins() -> None:
    assert "vanilla" in MODEL_REGISTRY
    assert "mlp" in NETWORK_REGISTRY
