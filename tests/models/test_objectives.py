"""Every loss term is what its name says."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from aeops.models import MODEL_REGISTRY, ModelConfig, NoiseConfig, build_model
from aeops.models._losses import (
    elementwise_reconstruction_error,
    elementwise_reconstruction_loss,
)
from aeops.models.objectives.denoising import corrupt
from aeops.models.objectives.sparse import kl_sparsity, l1_activity
from aeops.models.objectives.vae import gaussian_kl


def test_gaussian_kl_is_zero_for_the_prior_and_grows_as_the_mean_moves() -> None:
    zeros = torch.zeros(1, 4)
    assert gaussian_kl(zeros, zeros).item() == 0.0
    near, far = gaussian_kl(zeros + 0.5, zeros), gaussian_kl(zeros + 2.0, zeros)
    assert 0 < near.item() < far.item()
    # Closed form for a unit-variance shift m in each of 4 dims: 4 * m^2 / 2.
    assert far.item() == pytest.approx(4 * 2.0**2 / 2)
    assert gaussian_kl(zeros, zeros + 1.0).item() > 0  # a wider posterior costs too


def test_kl_sparsity_is_zero_at_the_target_rate_and_positive_elsewhere() -> None:
    at_target = torch.full((10, 3), 0.05)
    assert kl_sparsity(at_target, 0.05).item() == pytest.approx(0.0, abs=1e-6)
    assert kl_sparsity(torch.full((10, 3), 0.5), 0.05).item() > 0.5
    assert l1_activity(torch.tensor([[1.0, -3.0]])).item() == 2.0


def _model(kind: str, **overrides: object) -> torch.nn.Module:
    torch.manual_seed(0)
    config = ModelConfig(kind=kind, architecture="mlp", latent_dim=2, hidden_dims=(8,), **overrides)
    return build_model(config, (6,))


def test_sparse_total_is_reconstruction_plus_weighted_penalty() -> None:
    model = _model("sparse", sparsity={"kind": "kl", "weight": 0.5, "target": 0.1}, dropout=0.0)
    x = torch.randn(16, 6)
    with torch.no_grad():
        loss = model.loss(x)
        code = model.encode(x)
    assert ((code > 0) & (code < 1)).all()  # KL sparsity uses sigmoid units
    assert loss.terms["sparsity_kl"] == pytest.approx(kl_sparsity(code, 0.1).item())
    expected = loss.terms["reconstruction"] + 0.5 * loss.terms["sparsity_kl"]
    assert loss.total.item() == pytest.approx(expected.item())


def test_sparse_l1_total_is_the_mean_squared_error_plus_the_weighted_mean_activity() -> None:
    model = _model("sparse", sparsity={"kind": "l1", "weight": 0.3}, dropout=0.0).eval()
    x = torch.randn(16, 6)
    with torch.no_grad():
        loss = model.loss(x)
        code = model.encode(x)
        mse = (model.decode_logits(code) - x).pow(2).mean()
    assert loss.terms["sparsity_l1"].item() == pytest.approx(code.abs().mean().item())
    assert loss.terms["sparsity_l1"].item() > 0.01
    assert loss.total.item() == pytest.approx((mse + 0.3 * code.abs().mean()).item())


def test_denoising_corrupts_in_training_only() -> None:
    model = _model("denoising", noise={"kind": "gaussian", "level": 0.5}, dropout=0.0)
    x = torch.randn(8, 6)
    model.train()
    assert model.loss(x).total.item() != model.loss(x).total.item()  # fresh noise each time
    model.eval()
    clean = F.mse_loss(model.reconstruct(x), x).item()
    assert model.loss(x).total.item() == pytest.approx(clean)


def test_gaussian_noise_has_the_configured_spread() -> None:
    torch.manual_seed(0)
    x = torch.full((2000, 10), 3.0)
    noisy = corrupt(x, NoiseConfig(kind="gaussian", level=0.25))
    assert (noisy - x).mean().item() == pytest.approx(0.0, abs=0.01)
    assert (noisy - x).std().item() == pytest.approx(0.25, rel=0.03)


def test_masking_drops_about_the_configured_share() -> None:
    torch.manual_seed(0)
    masked = corrupt(torch.ones(1000, 10), NoiseConfig(kind="masking", level=0.3))
    assert (masked == 0).float().mean().item() == pytest.approx(0.3, abs=0.02)


def test_vae_loss_is_reconstruction_plus_beta_kl_and_embeds_the_mean() -> None:
    model = _model("vae", beta=2.0, dropout=0.0).eval()
    x = torch.randn(5, 6)
    loss = model.loss(x)
    mu, logvar = model.posterior(x)
    assert torch.equal(model.encode(x), mu)
    assert loss.terms["kl"].item() == pytest.approx(gaussian_kl(mu, logvar).mean().item())
    # The summed squared error per sample (a Gaussian likelihood's), not its mean.
    squared = (model.decode_logits(mu) - x).pow(2).sum(dim=1).mean()
    assert loss.terms["reconstruction"].item() == pytest.approx(squared.item())
    expected = loss.terms["reconstruction"] + 2.0 * loss.terms["kl"]
    assert loss.total.item() == pytest.approx(expected.item())


def test_vae_kl_warmup_ramps_beta_in_training() -> None:
    model = _model("vae", beta=1.0, kl_warmup_epochs=4, dropout=0.0)
    x = torch.randn(32, 6)
    model.train()
    model.on_epoch_start(1, 10)
    torch.manual_seed(1)
    early = model.loss(x)
    model.on_epoch_start(4, 10)
    torch.manual_seed(1)
    late = model.loss(x)
    assert early.total.item() == pytest.approx(
        (early.terms["reconstruction"] + 0.25 * early.terms["kl"]).item()
    )
    assert late.total.item() == pytest.approx(
        (late.terms["reconstruction"] + late.terms["kl"]).item()
    )
    model.on_epoch_start(1, 10)  # mid warm-up, validation still uses the full beta
    validation = model.eval().loss(x)
    assert validation.total.item() == pytest.approx(
        (validation.terms["reconstruction"] + validation.terms["kl"]).item()
    )
    assert validation.terms["kl"].item() > 0.01  # so a beta of 0.25 would show


def test_vae_elbo_scores_are_deterministic_whatever_the_batch() -> None:
    model = _model("vae", anomaly_score="elbo", score_samples=4, dropout=0.0).eval()
    x = torch.randn(6, 6)
    _, whole = model.score(x)
    _, alone = model.score(x[2:3])
    assert torch.allclose(whole[2:3], alone)
    _, reconstruction_only = _model("vae", dropout=0.0).eval().score(x)
    assert not torch.allclose(whole, reconstruction_only)


@pytest.mark.parametrize("kind", ["vanilla", "sparse", "vae"])
@pytest.mark.parametrize("anomaly_score", ["reconstruction", "elbo"])
def test_errors_apart_from_scores_leave_out_only_a_vae_s_kl_share(
    kind: str, anomaly_score: str
) -> None:
    torch.manual_seed(0)
    model = _model(kind, anomaly_score=anomaly_score, score_samples=4, dropout=0.0).eval()
    x = torch.randn(6, 6)
    with torch.inference_mode():
        z, scores, errors = model.scores_and_errors(x)
        expected_z, expected_scores = model.elementwise_scores(x)
    assert torch.equal(z, expected_z)
    assert torch.equal(scores, expected_scores)
    if kind == "vae" and anomaly_score == "elbo":
        mu, logvar = model.posterior(x)
        kl_share = (gaussian_kl(mu, logvar) / x.shape[1])[:, None]
        torch.testing.assert_close(scores - errors, kl_share.expand_as(scores))
        assert bool((kl_share > 0).all())
    else:
        assert torch.equal(errors, scores)


def test_bce_score_is_zero_for_a_perfect_reconstruction_of_gray_pixels() -> None:
    target = torch.tensor([[0.2, 0.5, 0.9]])
    perfect = torch.logit(target)
    assert elementwise_reconstruction_error(perfect, target, "bce").abs().max() < 1e-5
    assert F.binary_cross_entropy_with_logits(perfect, target) > 0.3  # raw BCE is not


def test_bce_compares_a_target_outside_0_1_as_its_bound_and_scores_the_distance() -> None:
    # A minmax-scaled value beyond the training range: before, its loss went negative
    # without bound in training and its score was clamped to 0.
    logits = torch.zeros(1, 3)  # reconstructs 0.5 everywhere
    target = torch.tensor([[0.5, 1.5, 3.0]])
    loss = elementwise_reconstruction_loss(logits, target, "bce")
    assert (loss >= 0).all()
    assert loss[0, 1] == pytest.approx(loss[0, 2].item())  # both compared as 1
    error = elementwise_reconstruction_error(logits, target, "bce")
    assert error[0, 0].item() == pytest.approx(0.0, abs=1e-6)
    assert 0.0 < error[0, 1].item() < error[0, 2].item()
    assert error[0, 2].item() == pytest.approx(
        error[0, 1].item() + (2.0**2 - 0.5**2), rel=1e-5
    )  # KL to the bound plus the squared distance past it


def test_kl_sparsity_stays_finite_for_a_saturated_unit_in_bf16() -> None:
    # In bf16, 1 - 1e-6 rounds to 1: the clamp let a rate of 1 through, and log(0) out.
    saturated = torch.ones(8, 2, dtype=torch.bfloat16)
    penalty = kl_sparsity(saturated, 0.05)
    assert torch.isfinite(penalty)
    assert penalty.item() > 10


def test_vae_generates_samples_in_input_space() -> None:
    model = _model("vae", reconstruction_loss="bce", dropout=0.0).eval()
    samples = model.generate(5, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (5, 6)
    assert ((samples >= 0) & (samples <= 1)).all()


def _with_an_outlier(n: int = 10) -> torch.Tensor:
    x = torch.randn(n, 6, generator=torch.Generator().manual_seed(3))
    x[4] *= 100.0  # one sample no model of the others reconstructs
    return x


@pytest.mark.parametrize("kind", sorted(MODEL_REGISTRY))
def test_trimming_leaves_the_worst_fitting_samples_out_of_the_training_loss_only(
    kind: str,
) -> None:
    x = _with_an_outlier()
    losses = {}
    for trim in (0.0, 0.1):
        model = _model(kind, dropout=0.0, trim_fraction=trim)
        model.train()
        torch.manual_seed(1)  # the same VAE draws and denoising noise for both
        training = model.loss(x)
        model.eval()
        losses[trim] = (training.total.item(), model.loss(x).total.item())
    (untrimmed, eval_untrimmed), (trimmed, eval_trimmed) = losses[0.0], losses[0.1]
    assert trimmed < untrimmed / 20  # the outlier (1 of 10) dominated the untrimmed mean
    assert eval_trimmed == eval_untrimmed  # validation and scores see every sample


@pytest.mark.parametrize(
    ("kind", "mode"),
    [("vanilla", "train"), ("vanilla", "eval"), ("sparse", "train"), ("denoising", "eval")],
)
@pytest.mark.parametrize("reconstruction_loss", ["mse", "l1", "bce"])
def test_the_untrimmed_loss_is_the_mean_of_per_sample_losses_with_the_same_gradients(
    kind: str, mode: str, reconstruction_loss: str
) -> None:
    # Without trimming, the objective is one fused mean over every element: it must
    # equal the mean of the per-sample losses, value and gradients alike, in training
    # (what the optimiser sees) and in evaluation (validation). Dropout is off and the
    # denoising kind is only evaluated, so both objectives see the same forward pass.
    x = torch.rand(10, 6, generator=torch.Generator().manual_seed(5))  # in [0, 1] for bce
    model = _model(kind, dropout=0.0, reconstruction_loss=reconstruction_loss)
    model.train(mode == "train")
    fused = model.loss(x).terms["reconstruction"]
    per_sample = model.reconstruction_loss(x).mean()
    assert fused.item() == pytest.approx(per_sample.item(), rel=1e-6)
    grads = [torch.autograd.grad(v, list(model.parameters())) for v in (fused, per_sample)]
    for fused_grad, per_sample_grad in zip(*grads, strict=True):
        torch.testing.assert_close(fused_grad, per_sample_grad, rtol=1e-5, atol=1e-7)


def test_the_trimmed_loss_is_the_mean_over_the_best_fitting_samples() -> None:
    model = _model("vanilla", dropout=0.0, trim_fraction=0.25)  # drops 2 of 10
    x = _with_an_outlier()
    per_sample = model.reconstruction_loss(x).detach()
    model.train()
    expected = per_sample.sort().values[:8].mean()
    assert model.loss(x).total.item() == pytest.approx(expected.item())
    with pytest.raises(ValueError, match="trim_fraction"):
        ModelConfig(trim_fraction=0.5)
