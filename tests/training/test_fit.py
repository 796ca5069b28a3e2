from __future__ import annotations

import contextlib
import logging
import os
import pty
import re
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from aeops.models import Autoencoder, LossOutput, ModelConfig, build_model
from aeops.training import EpochRecord, TrainingConfig, fit
from aeops.training import _progress as progress_module

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


class _SlowlyImproving(Autoencoder):
    """Trains as usual, but its validation loss falls by 4e-4 an epoch, from 1."""

    epoch = 0

    def on_epoch_start(self, epoch: int, epochs: int) -> None:
        self.epoch = epoch

    def loss(self, x: torch.Tensor) -> LossOutput:
        if self.training:
            return super().loss(x)
        return LossOutput(total=torch.tensor(1.0 - 4e-4 * self.epoch), terms={})


@pytest.mark.parametrize(("min_delta", "best_epoch", "epochs_run"), [(1e-3, 1, 3), (0.0, 10, 10)])
def test_gains_below_min_delta_do_not_count_as_improvements(
    plane: PlaneData, make_model: MakeModel, min_delta: float, best_epoch: int, epochs_run: int
) -> None:
    base = make_model()
    model = _SlowlyImproving(base.encoder, base.decoder, base.config)
    stopping = {"patience": 2, "min_delta": min_delta}
    config = TrainingConfig(epochs=10, early_stopping=stopping, device="cpu", progress=False)
    result = fit(model, plane(), plane(seed=1), config)
    assert (result.best_epoch, len(result.history)) == (best_epoch, epochs_run)


class _EvalMemoryLimit(Autoencoder):
    """Runs out of device memory on evaluation batches above ``limit`` rows, as a wide
    network on a nearly full GPU would."""

    limit = 32

    def loss(self, x: torch.Tensor) -> LossOutput:
        if not self.training and x.shape[0] > self.limit:
            raise torch.cuda.OutOfMemoryError(f"no memory for {x.shape[0]} rows")
        return super().loss(x)


@pytest.mark.parametrize("batch_size", [32, 16])
def test_validation_falls_back_to_the_training_batch_when_the_larger_one_runs_out_of_memory(
    batch_size: int,
    plane: PlaneData,
    make_model: MakeModel,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Validation batches are 4 training batches (128 or 64 rows here), over the limit.
    base = make_model("mlp_dropout", seed=3)
    limited = _EvalMemoryLimit(base.encoder, base.decoder, base.config)
    plain = make_model("mlp_dropout", seed=3)
    config = TrainingConfig(epochs=3, batch_size=batch_size, device="cpu", progress=False)
    with caplog.at_level(logging.INFO, logger="aeops.training"):
        result = fit(limited, plane(), plane(seed=1), config)
    expected = fit(plain, plane(), plane(seed=1), config)
    assert f"using {batch_size}, the training batch" in caplog.text
    got = [r.validation_loss for r in result.history]
    assert got == pytest.approx([r.validation_loss for r in expected.history], rel=1e-6)


def test_running_out_of_memory_at_the_training_batch_is_an_error(
    plane: PlaneData, make_model: MakeModel
) -> None:
    base = make_model()
    limited = _EvalMemoryLimit(base.encoder, base.decoder, base.config)
    config = TrainingConfig(epochs=1, batch_size=64, device="cpu", progress=False)
    with pytest.raises(torch.cuda.OutOfMemoryError, match="no memory for 64 rows"):
        fit(limited, plane(), plane(seed=1), config)


def test_empty_or_mismatched_sets_are_rejected(plane: PlaneData, make_model: MakeModel) -> None:
    with pytest.raises(ValueError, match="non-empty train and validation"):
        fit(make_model(), np.empty((0, 10), np.float32), plane(), TrainingConfig())
    with pytest.raises(ValueError, match=r"differ in shape: \(10,\) and \(9,\)"):
        fit(make_model(), plane(), plane()[:, :9], TrainingConfig())


def test_a_data_frame_is_refused_naming_what_fit_takes(
    plane: PlaneData, make_model: MakeModel
) -> None:
    with pytest.raises(TypeError, match=r"train samples as a numpy array .* not DataFrame"):
        fit(make_model(), pd.DataFrame(plane()), plane(seed=1), TrainingConfig(progress=False))


def test_bce_refuses_training_samples_outside_0_1(plane: PlaneData) -> None:
    from aeops.models import ModelConfig, build_model

    config = ModelConfig(architecture="mlp", latent_dim=2, reconstruction_loss="bce")
    model = build_model(config, (10,))
    train = plane()
    assert train.min() < 0
    with pytest.raises(ValueError, match=r"bce needs inputs in \[0, 1\].*span \[-"):
        fit(model, train, plane(seed=1), TrainingConfig(epochs=1))
    unit = (train - train.min()) / (train.max() - train.min())
    result = fit(model, unit, unit[:50], TrainingConfig(epochs=1))
    assert len(result.history) == 1


def test_cosine_schedule_refuses_a_floor_above_the_rate() -> None:
    with pytest.raises(ValueError, match=r"min_lr=0\.5 is above training\.lr=0\.001"):
        TrainingConfig(lr=1e-3, lr_schedule={"kind": "cosine", "min_lr": 0.5})
    assert TrainingConfig(lr=1e-3, lr_schedule={"kind": "cosine", "min_lr": 1e-5})


def test_metric_history_has_one_value_per_epoch(plane: PlaneData, make_model: MakeModel) -> None:
    config = TrainingConfig(epochs=4, lr=3e-3)
    started = time.time()
    history = fit(make_model(), plane(), plane(seed=1), config).metric_history()
    finished = time.time()
    assert {"train_loss", "validation_loss", "samples_per_second", "learning_rate"} <= (
        history.keys()
    )
    assert "train_reconstruction_loss" in history
    assert all(len(values) == 4 for values in history.values())
    assert history["learning_rate"] == [3e-3] * 4
    ended = history["epoch_end_time"]  # when each epoch ended, for the points' times
    assert started <= ended[0] and ended == sorted(ended) and ended[-1] <= finished
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


def test_a_long_run_in_a_log_says_how_far_it_is_now_and_then(
    plane: PlaneData,
    make_model: MakeModel,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Off a terminal a million-row run said nothing for minutes between its first line
    # and its end; it now logs its latest epoch every LOG_EVERY_SECONDS.
    monkeypatch.setattr(progress_module, "LOG_EVERY_SECONDS", 0.0)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)  # as under pytest -s too
    with caplog.at_level("INFO", logger="aeops.training"):
        fit(make_model(), plane(), plane(seed=1), TrainingConfig(epochs=3, progress=True))
        lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Epoch ")]
        assert [line.split(":")[0] for line in lines] == [f"Epoch {e} of 3" for e in (1, 2, 3)]
        assert re.search(r"samples/s; about \d+m \d\ds left at this pace", lines[0])
        caplog.clear()
        fit(make_model(), plane(), plane(seed=1), TrainingConfig(epochs=2, progress=False))
    assert not [r for r in caplog.records if r.getMessage().startswith("Epoch ")]


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


def test_the_vae_warm_up_counts_the_fits_epochs_from_one(
    quick_config: TrainingConfig, plane: Callable[..., np.ndarray]
) -> None:
    # Epoch 1 of a 4-epoch warm-up trains at a quarter of beta, epoch 4 at all of it.
    config = ModelConfig(
        kind="vae", architecture="mlp", latent_dim=2, hidden_dims=(16,), kl_warmup_epochs=4
    )
    model = build_model(config, (plane().shape[1],))
    betas: list[float] = []
    fit(
        model,
        plane(),
        plane(seed=1),
        quick_config,
        on_epoch_end=lambda _: betas.append(model._beta_now),
    )  # type: ignore[attr-defined]
    assert betas == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
