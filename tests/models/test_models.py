from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from aeops.models import MODEL_REGISTRY, NETWORK_REGISTRY, Autoencoder, ModelConfig, build_model

N_FEATURES = 12


def _model(kind: str, **overrides: object) -> Autoencoder:
    config = ModelConfig(kind=kind, architecture="mlp", latent_dim=3, hidden_dims=(8,), **overrides)
    return build_model(config, (N_FEATURES,))


SHAPES = {"mlp": (12,), "conv": (1, 9, 10), "recurrent": (7, 3)}
COMBINATIONS = [(k, a) for k in sorted(MODEL_REGISTRY) for a in sorted(NETWORK_REGISTRY)]


def _build(kind: str, architecture: str, **overrides: object) -> Autoencoder:
    torch.manual_seed(0)
    hidden = (4, 8) if architecture == "conv" else (8,)
    config = ModelConfig(
        kind=kind, architecture=architecture, latent_dim=3, hidden_dims=hidden, **overrides
    )
    return build_model(config, SHAPES[architecture])


@pytest.mark.parametrize(("kind", "architecture"), COMBINATIONS)
def test_contract_shapes_finite_loss_and_a_step_that_learns(kind: str, architecture: str) -> None:
    model = _build(kind, architecture)
    x = torch.rand(5, *SHAPES[architecture])
    z, errors = model.score(x)
    assert z.shape == (5, 3)
    assert errors.shape == (5,)
    assert model.reconstruct(x).shape == x.shape
    loss = model.loss(x)
    assert torch.isfinite(loss.total)
    assert "reconstruction" in loss.terms
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    optimizer.zero_grad()
    loss.total.backward()
    optimizer.step()
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize(("kind", "architecture"), COMBINATIONS)
def test_eval_answers_are_deterministic_and_survive_a_state_dict_round_trip(
    kind: str, architecture: str
) -> None:
    model = _build(kind, architecture, dropout=0.3).eval()
    x = torch.rand(6, *SHAPES[architecture])
    first, second = model.score(x), model.score(x)
    assert torch.equal(first[0], second[0])
    assert torch.equal(first[1], second[1])
    copy = _build(kind, architecture, dropout=0.3).eval()
    with torch.no_grad():  # every tensor differs until the state dict comes in
        for tensor in copy.state_dict().values():
            tensor.copy_(torch.rand_like(tensor.float()).to(tensor.dtype))
    assert not torch.equal(copy.score(x)[1], first[1])
    copy.load_state_dict(model.state_dict())
    assert torch.equal(copy.score(x)[0], first[0])
    assert torch.equal(copy.score(x)[1], first[1])


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
    with pytest.raises(ValueError, match=r"latent_dim=12 must be smaller than the 12 input values"):
        build_model(config, (N_FEATURES,))


def test_mlp_rejects_images() -> None:
    with pytest.raises(ValueError, match="use 'conv' for images"):
        build_model(ModelConfig(architecture="mlp"), (1, 28, 28))


def test_an_architecture_not_yet_registered_is_named() -> None:
    config = ModelConfig.model_construct(kind="vanilla", architecture="transformer", latent_dim=2)
    with pytest.raises(ValueError, match=r"model\.architecture='transformer' is not registered"):
        build_model(config, (1, 8, 8))


def test_an_unset_architecture_names_the_choices_and_how_to_resolve_it() -> None:
    with pytest.raises(ValueError, match=r"not set; choose one of: conv, mlp, recurrent.*resolve"):
        build_model(ModelConfig(), (N_FEATURES,))


@pytest.mark.parametrize("kind", sorted(MODEL_REGISTRY))
def test_a_seed_fixes_the_initial_weights_and_leaves_the_global_state_alone(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = ModelConfig(kind=kind, architecture="mlp", latent_dim=2)
    torch.manual_seed(1)

    def reseeds_the_gpus(seed: int) -> None:
        raise AssertionError("build_model reseeded the GPUs' generators")

    monkeypatch.setattr(torch.cuda, "manual_seed_all", reseeds_the_gpus)
    first = build_model(config, (N_FEATURES,), seed=7)
    state = torch.get_rng_state()
    second = build_model(config, (N_FEATURES,), seed=7)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's draws are unchanged
    other = build_model(config, (N_FEATURES,), seed=8)
    pairs = list(zip(first.state_dict().values(), second.state_dict().values(), strict=True))
    assert all(torch.equal(a, b) for a, b in pairs)
    assert not all(
        torch.equal(a, b)
        for a, b in zip(first.state_dict().values(), other.state_dict().values(), strict=True)
    )


def test_registries_hold_the_built_ins() -> None:
    assert set(MODEL_REGISTRY) == {"vanilla", "sparse", "denoising", "vae"}
    assert set(NETWORK_REGISTRY) == {"mlp", "conv", "recurrent"}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"sparsity": {"kind": "l2"}}, r"sparsity\.kind"),
        ({"noise": {"kind": "masking", "level": 1.0}}, "drop probability"),
        ({"noise": {"levle": 0.1}}, "levle"),
        ({"beta": -1.0}, "beta"),
        ({"cell": "rnn"}, "cell"),
        ({"anomaly_score": "likelihood"}, "anomaly_score"),
    ],
)
def test_invalid_kind_options_are_named(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ModelConfig(**options)


@pytest.mark.parametrize(
    ("size", "layers"),
    [((1, 28, 28), 2), ((3, 13, 17), 2), ((2, 5, 6), 2), ((1, 8, 1), 1), ((2, 5, 3), 3)],
)
def test_conv_reconstructs_images_of_any_size(size: tuple[int, int, int], layers: int) -> None:
    # An H x 1 image halves its height only; it was refused with "use fewer layers"
    # even with the one layer a conv network needs.
    config = ModelConfig(architecture="conv", latent_dim=2, hidden_dims=(4, 8, 8)[:layers])
    model = build_model(config, size)
    assert model.reconstruct(torch.rand(2, *size)).shape == (2, *size)


def test_conv_refuses_images_too_small_for_its_layers() -> None:
    with pytest.raises(ValueError, match=r"too small for 3 stride-2 layers.* use at most 2 layers"):
        build_model(
            ModelConfig(architecture="conv", latent_dim=2, hidden_dims=(4, 8, 8)), (1, 3, 3)
        )


@pytest.mark.parametrize(("architecture", "shape"), [("conv", (1, 8, 8)), ("recurrent", (9, 2))])
def test_conv_and_recurrent_name_an_empty_hidden_dims(
    architecture: str, shape: tuple[int, ...]
) -> None:
    config = ModelConfig(architecture=architecture, latent_dim=2, hidden_dims=())
    with pytest.raises(ValueError, match=rf"'{architecture}' needs at least one .*hidden_dims"):
        build_model(config, shape)


def test_recurrent_gru_and_stacked_layers() -> None:
    config = ModelConfig(architecture="recurrent", cell="gru", latent_dim=2, hidden_dims=(6, 6))
    model = build_model(config, (9, 2))
    assert isinstance(model.encoder.rnn, torch.nn.GRU)
    assert model.encoder.rnn.num_layers == 2
    assert model.reconstruct(torch.rand(4, 9, 2)).shape == (4, 9, 2)


def test_a_windows_code_reads_its_last_step() -> None:
    # The code comes from the recurrent encoder's final state: it must see every step.
    torch.manual_seed(0)
    config = ModelConfig(architecture="recurrent", latent_dim=2, hidden_dims=(6,), dropout=0.0)
    model = build_model(config, (9, 2)).eval()
    x = torch.rand(3, 9, 2)
    later = x.clone()
    later[:, -1] += 1.0
    assert not torch.allclose(model.encode(x), model.encode(later))


@pytest.mark.parametrize(
    ("architecture", "shape", "hidden"),
    [
        ("mlp", (6,), (8, 8)),
        ("recurrent", (9, 2), (8, 8)),  # between stacked layers, and after them
        ("recurrent", (9, 2), (8,)),  # one layer: dropout was silently 0
        ("conv", (1, 8, 8), (4, 4)),  # conv networks had none
    ],
)
def test_dropout_draws_masks_in_training_only(
    architecture: str, shape: tuple[int, ...], hidden: tuple[int, ...]
) -> None:
    torch.manual_seed(0)
    x = torch.rand(4, *shape)
    for dropout, varies in ((0.5, True), (0.0, False)):
        config = ModelConfig(
            architecture=architecture, latent_dim=2, hidden_dims=hidden, dropout=dropout
        )
        model = build_model(config, shape).train()
        assert (not torch.equal(model.reconstruct(x), model.reconstruct(x))) is varies
        model.eval()
        assert torch.equal(model.reconstruct(x), model.reconstruct(x))


def test_dropout_leaves_a_conv_networks_parameter_names_as_they_were() -> None:
    # Weights saved before conv networks had dropout still load into one that has it.
    plain = ModelConfig(architecture="conv", latent_dim=2, hidden_dims=(4, 4), dropout=0.0)
    dropped = plain.model_copy(update={"dropout": 0.3})
    saved = build_model(plain, (1, 8, 8)).state_dict()
    build_model(dropped, (1, 8, 8)).load_state_dict(saved)  # strict: same names and shapes
