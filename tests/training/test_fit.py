from __future__ import annotations

import contextlib
import os
import pty
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from aeops.models import Autoencoder
from aeops.training import EpochRecord, TrainingConfig, fit

PlaneData = Callable[..., np.ndarray]
MakeModel = Callable[..., Autoencoder]
WeightsEqual = Callable[[torch.nn.Module, torch.nn.Module], bool]

PARAMETERS_FILE = Path(__file__).resolve().parents[2] / "conf" / "base" / "parameters_training.yml"


def test_training_reduces_validation_loss(plane: PlaneData, make_model: MakeModel) -> None:
    config = TrainingConfig(epochs=60, batch_size=32, lr=1e-2, progress=False)
    result = fit(make_model(), plane(), plane(seed=1), config)
    losses = [r.validation_loss for r in result.history]
    assert losses[-1] < 0.2 * losses[0]
    assert result.device == ("cuda" if torch.cuda.is_available() else "cpu")  # device: auto


@pytest.mark.parametrize("kind", ["mlp_dropout", "noisy_input"])
def test_same_seed_gives_bitwise_identical_weights_and_history(
    kind: str, plane: PlaneData, make_model: MakeModel, weights_equal: WeightsEqual
) -> None:
    config = TrainingConfig(epochs=5, batch_size=16, seed=3, progress=False)
    first, second = make_model(kind), make_model(kind)
    history_a = fit(first, plane(), plane(seed=1), config).history
    history_b = fit(second, plane(), plane(seed=1), config).history
    assert weights_equal(first, second)
    assert [(r.train_loss, r.validation_loss) for r in history_a] == [
        (r.train_loss, r.validation_loss) for r in history_b
    ]


def test_different_seed_changes_batch_order_and_weights(
    plane: PlaneData, make_model: MakeModel, weights_equal: WeightsEqual
) -> None:
    a, b = make_model(), make_model()
    fit(a, plane(), plane(seed=1), TrainingConfig(epochs=3, batch_size=16, seed=1))
    fit(b, plane(), plane(seed=1), TrainingConfig(epochs=3, batch_size=16, seed=2))
    assert not weights_equal(a, b)


def test_early_stopping_stops_and_restores_the_best_weights(
    plane: PlaneData, make_model: MakeModel
) -> None:
    model = make_model()
    snapshots: dict[int, dict[str, torch.Tensor]] = {}

    def snapshot(record: EpochRecord) -> None:
        snapshots[record.epoch] = {k: v.clone() for k, v in model.state_dict().items()}

    config = TrainingConfig(
        epochs=500,
        batch_size=32,
        lr=5e-2,
        early_stopping={"patience": 3, "min_delta": 1e-3},
        device="cpu",  # fp32 on the CPU, so the loss below matches the logged one
    )
    result = fit(model, plane(), plane(seed=1), config, on_epoch_end=snapshot)
    assert result.stopped_early
    assert len(result.history) == result.best_epoch + 3
    best = snapshots[result.best_epoch]
    assert all(torch.equal(value, best[name]) for name, value in model.state_dict().items())
    last = snapshots[result.history[-1].epoch]
    assert not all(torch.equal(value, last[name]) for name, value in model.state_dict().items())
    restored = model.loss(torch.from_numpy(plane(seed=1))).total.item()
    assert restored == pytest.approx(result.best_validation_loss, rel=1e-4)


def test_without_early_stopping_all_epochs_run(plane: PlaneData, make_model: MakeModel) -> None:
    config = TrainingConfig(epochs=7, early_stopping={"enabled": False})
    result = fit(make_model(), plane(), plane(seed=1), config)
    assert len(result.history) == 7
    assert result.best_epoch == 7
    assert not result.stopped_early


def test_empty_or_mismatched_sets_are_rejected(plane: PlaneData, make_model: MakeModel) -> None:
    with pytest.raises(ValueError, match="non-empty train and validation"):
        fit(make_model(), np.empty((0, 10), np.float32), plane(), TrainingConfig())
    with pytest.raises(ValueError, match=r"differ in shape: \(10,\) and \(9,\)"):
        fit(make_model(), plane(), plane()[:, :9], TrainingConfig())


def test_metric_history_has_one_value_per_epoch(plane: PlaneData, make_model: MakeModel) -> None:
    config = TrainingConfig(epochs=4, lr=3e-3)
    history = fit(make_model(), plane(), plane(seed=1), config).metric_history()
    assert {"train_loss", "validation_loss", "samples_per_second", "learning_rate"} <= (
        history.keys()
    )
    assert "train_reconstruction_loss" in history
    assert all(len(values) == 4 for values in history.values())
    assert history["learning_rate"] == [3e-3] * 4
    assert all(value > 0 for value in history["samples_per_second"])


def test_inputs_are_not_changed(plane: PlaneData, make_model: MakeModel) -> None:
    train = plane()
    before = train.copy()
    fit(make_model(), train, plane(seed=1), TrainingConfig(epochs=2, batch_size=32))
    assert np.array_equal(train, before)


def test_fit_accepts_inputs_of_any_sample_shape(make_model: MakeModel) -> None:
    """The loop only slices the first axis, so (N, T, F) windows train like rows."""
    torch.manual_seed(0)
    encoder = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2))
    decoder = torch.nn.Sequential(torch.nn.Linear(2, 12), torch.nn.Unflatten(1, (3, 4)))
    model = Autoencoder(encoder, decoder, make_model().config)
    windows = np.random.default_rng(0).normal(size=(64, 3, 4)).astype(np.float32)
    result = fit(model, windows, windows[:16], TrainingConfig(epochs=3, batch_size=16))
    assert len(result.history) == 3


def test_no_progress_output_when_stderr_is_not_a_terminal(
    plane: PlaneData, make_model: MakeModel, capsys: pytest.CaptureFixture[str]
) -> None:
    fit(make_model(), plane(), plane(seed=1), TrainingConfig(epochs=2, progress=True))
    captured = capsys.readouterr()
    # Log records may reach a handler another test installed; a progress bar must not.
    for stream in (captured.out, captured.err):
        assert "samples/s" not in stream
        assert "━" not in stream


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("batch_size", 0),
        ("lr", 0.0),
        ("lr", -1.0),
        ("epochs", 0),
        ("checkpoint_every", -1),
        ("grad_clip_norm", 0.0),
        ("device_memory_fraction", 1.5),
    ],
)
def test_invalid_settings_are_rejected(key: str, value: float) -> None:
    with pytest.raises(ValueError, match=key):
        TrainingConfig(**{key: value})


@pytest.mark.parametrize(
    ("key", "value"),
    [("optimizer", "adagrad"), ("precision", "fp8"), ("data_placement", "disk"), ("lr_rate", 1)],
)
def test_unknown_choices_and_keys_are_rejected(key: str, value: object) -> None:
    with pytest.raises(ValueError, match=key):
        TrainingConfig(**{key: value})


def test_parameters_file_validates_and_keeps_the_fast_cpu_defaults() -> None:
    block = yaml.safe_load(PARAMETERS_FILE.read_text())["training"]
    config = TrainingConfig(**block)
    assert config.device == "auto"
    assert config.precision == "auto"
    assert config.optimizer == "adam"
    assert not config.resume
    # Every key of the config is spelled out in the file, so users see what exists.
    assert set(block) == set(TrainingConfig.model_fields)


def test_progress_bar_is_drawn_on_a_terminal(
    plane: PlaneData, make_model: MakeModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real pseudo-terminal as stderr: the bar shows the epochs and the losses."""
    controller, terminal = pty.openpty()
    chunks: list[bytes] = []

    def drain() -> None:
        with contextlib.suppress(OSError):
            while chunk := os.read(controller, 4096):
                chunks.append(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    with os.fdopen(terminal, "w", encoding="utf-8") as stderr:
        monkeypatch.setattr(sys, "stderr", stderr)
        fit(make_model(), plane(), plane(seed=1), TrainingConfig(epochs=3, progress=True))
        stderr.flush()
    reader.join(timeout=5)
    os.close(controller)
    shown = b"".join(chunks).decode("utf-8", errors="replace")
    assert "3/3" in shown
    assert "samples/s" in shown
