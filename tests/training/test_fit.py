from __future__ import annotations

import numpy as np
import pytest
import torch

from aeops.models import ModelConfig, build_model
from aeops.training import TrainingConfig, TrainingDivergedError, fit, resolve_precision

_MIXING = np.random.default_rng(99).normal(size=(2, 10))


def _data(n: int = 256, seed: int = 0) -> np.ndarray:
    """Rows on a 2-D plane in 10-D: a 2-unit code can reconstruct them."""
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, 2)) @ _MIXING).astype(np.float32)


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(ModelConfig(architecture="mlp", latent_dim=2, hidden_dims=(16,)), (10,))


def test_training_reduces_validation_loss() -> None:
    model = _model()
    result = fit(model, _data(), _data(seed=1), TrainingConfig(epochs=60, batch_size=32, lr=1e-2))
    losses = [r.validation_loss for r in result.history]
    assert losses[-1] < 0.2 * losses[0]
    assert result.device == "cpu"


def test_same_seed_gives_bitwise_identical_weights_and_history() -> None:
    config = TrainingConfig(epochs=5, batch_size=16, seed=3)
    first, second = _model(), _model()
    history_a = fit(first, _data(), _data(seed=1), config).history
    history_b = fit(second, _data(), _data(seed=1), config).history
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert [r.train_loss for r in history_a] == [r.train_loss for r in history_b]


def test_different_seed_changes_batch_order_and_weights() -> None:
    a, b = _model(), _model()
    fit(a, _data(), _data(seed=1), TrainingConfig(epochs=3, batch_size=16, seed=1))
    fit(b, _data(), _data(seed=1), TrainingConfig(epochs=3, batch_size=16, seed=2))
    assert not torch.equal(a.encoder[0].weight, b.encoder[0].weight)


def test_early_stopping_stops_and_restores_the_best_weights() -> None:
    model = _model()
    config = TrainingConfig(
        epochs=500, batch_size=32, lr=5e-2, early_stopping={"patience": 3, "min_delta": 1e-3}
    )
    result = fit(model, _data(), _data(seed=1), config)
    assert result.stopped_early
    assert len(result.history) == result.best_epoch + 3
    restored = model.loss(torch.from_numpy(_data(seed=1))).total.item()
    assert restored == pytest.approx(result.best_validation_loss, rel=1e-4)


def test_without_early_stopping_all_epochs_run() -> None:
    config = TrainingConfig(epochs=7, early_stopping={"enabled": False})
    result = fit(_model(), _data(), _data(seed=1), config)
    assert len(result.history) == 7
    assert result.best_epoch == 7


def test_divergence_names_the_epoch_and_the_likely_cause() -> None:
    data = _data() * 1e30
    with pytest.raises(TrainingDivergedError, match=r"at epoch 1: lower training.lr"):
        fit(_model(), data, data, TrainingConfig(epochs=3))


def test_empty_sets_are_rejected() -> None:
    with pytest.raises(ValueError, match="non-empty train and validation"):
        fit(_model(), np.empty((0, 10), np.float32), _data(), TrainingConfig())


def test_metric_history_has_one_value_per_epoch() -> None:
    result = fit(_model(), _data(), _data(seed=1), TrainingConfig(epochs=4))
    history = result.metric_history()
    assert {"train_loss", "validation_loss", "samples_per_second"} <= history.keys()
    assert all(len(values) == 4 for values in history.values())


def test_auto_precision_is_fp32_on_cpu() -> None:
    assert resolve_precision("auto", torch.device("cpu")) is None
    assert resolve_precision("bf16", torch.device("cpu")) is torch.bfloat16


@pytest.mark.parametrize(
    ("key", "value"), [("batch_size", 0), ("lr", 0.0), ("lr", -1.0), ("epochs", 0)]
)
def test_nonpositive_settings_are_rejected(key: str, value: float) -> None:
    with pytest.raises(ValueError, match=key):
        TrainingConfig(**{key: value})
