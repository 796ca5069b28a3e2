"""Checkpoints: resume equals an uninterrupted run, atomic writes, divergence, mismatches."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from aeops.models import Autoencoder, build_model
from aeops.training import (
    CheckpointMismatchError,
    EpochRecord,
    TrainingConfig,
    TrainingDivergedError,
    fit,
)
from aeops.training._checkpoint import save_atomically

PlaneData = Callable[..., np.ndarray]
MakeModel = Callable[..., Autoencoder]
WeightsEqual = Callable[[torch.nn.Module, torch.nn.Module], bool]


class InterruptedRunError(Exception):
    """Stands for a killed process: raised from the epoch callback."""


def interrupt_after(epoch: int) -> Callable[[EpochRecord], None]:
    def callback(record: EpochRecord) -> None:
        if record.epoch == epoch:
            raise InterruptedRunError

    return callback


def changed(config: TrainingConfig, changes: dict[str, object]) -> TrainingConfig:
    """``config`` with ``changes``, validated like a parameter file."""
    return TrainingConfig.model_validate({**config.model_dump(), **changes})


def numbers(history: list[EpochRecord]) -> list[tuple[object, ...]]:
    """Everything in a history but the timings, which differ from run to run."""
    return [(r.epoch, r.train_loss, r.validation_loss, r.learning_rate, r.terms) for r in history]


def leftovers(folder: Path) -> list[str]:
    """Temporary files a writer left behind."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@pytest.mark.parametrize(
    ("kind", "optimizer", "schedule", "every", "stop_after"),
    [
        ("mlp_dropout", "adam", "none", 1, 3),
        ("noisy_input", "sgd", "cosine", 1, 2),
        ("mlp_dropout", "adamw", "plateau", 2, 5),  # resumes from epoch 4: replays epoch 5
        ("noisy_input", "adam", "cosine", 3, 4),
    ],
)
def test_resume_after_an_interruption_equals_an_uninterrupted_run(
    kind: str,
    optimizer: str,
    schedule: str,
    every: int,
    stop_after: int,
    tmp_path: Path,
    plane: PlaneData,
    make_model: MakeModel,
    weights_equal: WeightsEqual,
) -> None:
    def config(folder: str, **changes: object) -> TrainingConfig:
        return TrainingConfig(
            epochs=7,
            batch_size=32,
            lr=1e-2,
            optimizer=optimizer,
            lr_schedule={"kind": schedule, "patience": 0},
            grad_clip_norm=1.0,
            seed=11,
            checkpoint_dir=str(tmp_path / folder),
            checkpoint_every=every,
            progress=False,
            **changes,
        )

    train, validation = plane(), plane(seed=1)
    whole = make_model(kind)
    expected = fit(whole, train, validation, config("whole"))

    interrupted = make_model(kind)
    with pytest.raises(InterruptedRunError):
        fit(
            interrupted,
            train,
            validation,
            config("split"),
            on_epoch_end=interrupt_after(stop_after),
        )
    resumed = make_model(kind, seed=123)  # its own weights are replaced by the checkpoint
    result = fit(resumed, train, validation, config("split", resume=True))

    assert result.resumed_from_epoch == stop_after - stop_after % every
    assert weights_equal(resumed, whole)
    assert numbers(result.history) == numbers(expected.history)
    assert (result.best_epoch, result.best_validation_loss) == (
        expected.best_epoch,
        expected.best_validation_loss,
    )
    assert leftovers(tmp_path / "split") == []


def stopping_early(folder: Path, every: int, resume: bool = False) -> TrainingConfig:
    """A run that stops early (patience 3), checkpointed every ``every`` epochs."""
    return TrainingConfig(
        epochs=300,
        batch_size=32,
        lr=5e-2,
        early_stopping={"patience": 3, "min_delta": 1e-3},
        checkpoint_dir=str(folder),
        checkpoint_every=every,
        resume=resume,
    )


def test_resume_continues_an_early_stopped_run_to_the_same_end(
    tmp_path: Path, plane: PlaneData, make_model: MakeModel, weights_equal: WeightsEqual
) -> None:
    def config(folder: str, resume: bool = False) -> TrainingConfig:
        return stopping_early(tmp_path / folder, every=4, resume=resume)

    whole = make_model()
    expected = fit(whole, plane(), plane(seed=1), config("whole"))
    assert expected.stopped_early
    with pytest.raises(InterruptedRunError):  # resumes from epoch 4, replays 5 and 6
        fit(make_model(), plane(), plane(seed=1), config("split"), interrupt_after(6))
    resumed = make_model(seed=123)  # its own weights are replaced by the checkpoint
    assert not weights_equal(resumed, whole)
    result = fit(resumed, plane(), plane(seed=1), config("split", resume=True))
    assert result.resumed_from_epoch == 4
    assert result.stopped_early
    assert result.best_epoch == expected.best_epoch
    assert numbers(result.history) == numbers(expected.history)
    assert weights_equal(resumed, whole)  # both hold the restored best weights


def test_resume_after_the_best_epoch_keeps_its_weights_and_the_stale_count(
    tmp_path: Path, plane: PlaneData, make_model: MakeModel, weights_equal: WeightsEqual
) -> None:
    def config(folder: str, resume: bool = False) -> TrainingConfig:
        return stopping_early(tmp_path / folder, every=1, resume=resume)

    whole = make_model()
    expected = fit(whole, plane(), plane(seed=1), config("whole"))
    stop, best = len(expected.history), expected.best_epoch
    assert expected.stopped_early and stop == best + 3
    with pytest.raises(InterruptedRunError):  # two epochs after the best one
        fit(make_model(), plane(), plane(seed=1), config("split"), interrupt_after(best + 2))
    ran: list[int] = []
    resumed = make_model(seed=123)
    result = fit(
        resumed,
        plane(),
        plane(seed=1),
        config("split", resume=True),
        on_epoch_end=lambda record: ran.append(record.epoch),
    )
    assert result.resumed_from_epoch is not None and result.resumed_from_epoch > best
    assert ran == list(range(result.resumed_from_epoch + 1, stop + 1))  # stale epochs counted
    assert result.best_epoch == best
    assert weights_equal(resumed, whole)  # the best epoch's weights, kept in the checkpoint
    # The stopped run, resumed, stays stopped.
    ran.clear()
    fit(
        make_model(seed=7),
        plane(),
        plane(seed=1),
        config("whole", resume=True),
        on_epoch_end=lambda record: ran.append(record.epoch),
    )
    assert ran == []


def test_resume_refuses_another_model_with_parameters_of_the_same_shapes(
    quick_config: TrainingConfig, plane: PlaneData, make_model: MakeModel
) -> None:
    config = changed(quick_config, {"checkpoint_every": 1})
    fit(make_model(), plane(), plane(seed=1), config)
    resume = changed(config, {"resume": True})
    base = make_model().config  # the same network, with more dropout
    other = build_model(base.model_copy(update={"dropout": 0.5}), (plane().shape[1],))
    with pytest.raises(CheckpointMismatchError, match="model"):
        fit(other, plane(), plane(seed=1), resume)
    with pytest.raises(CheckpointMismatchError, match=r"training\.seed"):
        fit(make_model(), plane(), plane(seed=1), changed(resume, {"seed": 6}))


def test_resuming_a_finished_run_trains_nothing_and_returns_its_result(
    quick_config: TrainingConfig,
    plane: PlaneData,
    make_model: MakeModel,
    weights_equal: WeightsEqual,
) -> None:
    config = changed(quick_config, {"checkpoint_every": 4})
    first = make_model()
    done = fit(first, plane(), plane(seed=1), config)
    again = make_model(seed=9)
    epochs_run: list[int] = []
    result = fit(
        again,
        plane(),
        plane(seed=1),
        changed(config, {"resume": True}),
        on_epoch_end=lambda record: epochs_run.append(record.epoch),
    )
    assert epochs_run == []
    assert result.resumed_from_epoch == config.epochs  # the last epoch is always saved
    assert result.history == done.history
    assert weights_equal(again, first)


def test_resume_refuses_a_checkpoint_past_the_epochs_asked_for(
    quick_config: TrainingConfig, plane: PlaneData, make_model: MakeModel
) -> None:
    # It returned the longer run as if it had trained for the new, shorter one.
    config = changed(quick_config, {"checkpoint_every": 1})
    fit(make_model(), plane(), plane(seed=1), config)
    shorter = changed(config, {"resume": True, "epochs": config.epochs - 1})
    with pytest.raises(
        CheckpointMismatchError,
        match=rf"has trained {config.epochs} epochs, more than training.epochs={config.epochs - 1}",
    ):
        fit(make_model(), plane(), plane(seed=1), shorter)
    # An early-stopped run too: it trained past the epochs now asked for.
    stopping = changed(config, {"epochs": 300, "lr": 5e-2, "early_stopping": {"patience": 2}})
    stopped = fit(make_model(), plane(), plane(seed=1), stopping)
    assert stopped.stopped_early and len(stopped.history) > 2
    fewer = changed(stopping, {"resume": True, "epochs": 2})
    with pytest.raises(CheckpointMismatchError, match=r"more than training\.epochs=2"):
        fit(make_model(), plane(), plane(seed=1), fewer)


def test_resume_without_a_checkpoint_starts_from_the_first_epoch(
    quick_config: TrainingConfig,
    plane: PlaneData,
    make_model: MakeModel,
    weights_equal: WeightsEqual,
) -> None:
    fresh, resumed = make_model(), make_model()
    fit(fresh, plane(), plane(seed=1), quick_config)
    result = fit(resumed, plane(), plane(seed=1), changed(quick_config, {"resume": True}))
    assert result.resumed_from_epoch is None
    assert len(result.history) == quick_config.epochs
    assert weights_equal(fresh, resumed)


def test_resume_without_checkpoints_being_saved_is_warned_of(
    quick_config: TrainingConfig,
    plane: PlaneData,
    make_model: MakeModel,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # checkpoint_every 0 (the default) with resume on saved nothing, silently.
    unsaved = changed(quick_config, {"resume": True, "checkpoint_every": 0})
    with caplog.at_level("WARNING", logger="aeops.training._fit"):
        fit(make_model(), plane(), plane(seed=1), unsaved)
    assert "training.checkpoint_every is 0: this run saves no checkpoint" in caplog.text
    assert not any(Path(quick_config.checkpoint_dir).iterdir())
    caplog.clear()
    saved = changed(unsaved, {"checkpoint_every": 2})
    with caplog.at_level("WARNING", logger="aeops.training._fit"):
        fit(make_model(), plane(), plane(seed=1), saved)
    assert "checkpoint_every" not in caplog.text


def test_resume_refuses_a_checkpoint_of_another_run(
    quick_config: TrainingConfig, plane: PlaneData, make_model: MakeModel
) -> None:
    config = changed(quick_config, {"checkpoint_every": 1})
    fit(make_model(), plane(), plane(seed=1), config)
    other_lr = changed(config, {"resume": True, "lr": 1e-4})
    with pytest.raises(CheckpointMismatchError, match=r"training\.lr: '0\.01' in the checkpoint"):
        fit(make_model(), plane(), plane(seed=1), other_lr)
    with pytest.raises(CheckpointMismatchError, match="train_shape"):
        fit(make_model(), plane(n=128), plane(seed=1), changed(config, {"resume": True}))
    # Other rows of the same shape, or another stopping rule, are another run too.
    with pytest.raises(CheckpointMismatchError, match=r"(?s)train_data: '[0-9a-f]{32}'.*now"):
        fit(make_model(), plane(seed=5), plane(seed=1), changed(config, {"resume": True}))
    other_patience = changed(config, {"resume": True, "early_stopping": {"patience": 2}})
    with pytest.raises(CheckpointMismatchError, match=r"training\.early_stopping"):
        fit(make_model(), plane(), plane(seed=1), other_patience)
    resumed = fit(make_model(), plane(), plane(seed=1), changed(config, {"resume": True}))
    assert resumed.resumed_from_epoch == config.epochs  # the same run still resumes


def test_checkpoints_load_with_weights_only_and_leave_no_temporary_files(
    quick_config: TrainingConfig, plane: PlaneData, make_model: MakeModel
) -> None:
    config = changed(quick_config, {"checkpoint_every": 2, "lr_schedule": {"kind": "plateau"}})
    model = make_model()
    result = fit(model, plane(), plane(seed=1), config)
    folder = Path(config.checkpoint_dir)
    assert sorted(p.name for p in folder.iterdir()) == ["last.pt"]
    assert result.checkpoint_path == str(folder / "last.pt")
    state = torch.load(folder / "last.pt", weights_only=True)
    assert state["epoch"] == config.epochs
    assert {"model", "optimizer", "scheduler", "rng", "history", "early_stopping"} <= state.keys()
    assert isinstance(state["rng"]["torch"], torch.Tensor)
    assert len(state["history"]) == config.epochs


def test_a_failed_write_keeps_the_previous_checkpoint_and_no_temporary_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "last.pt"
    save_atomically({"epoch": 1, "weights": torch.ones(3)}, path)
    with pytest.raises(Exception, match=r"pickle|lambda|Can't"):
        save_atomically({"epoch": 2, "not_a_tensor": lambda: None}, path)
    assert torch.load(path, weights_only=True)["epoch"] == 1
    assert leftovers(tmp_path) == []


def test_unscaled_inputs_stop_training_with_a_checkpoint_and_the_cause(
    quick_config: TrainingConfig, plane: PlaneData, make_model: MakeModel
) -> None:
    data = plane() * 1e30
    with pytest.raises(TrainingDivergedError) as caught:
        fit(make_model(), data, data, quick_config)
    message = str(caught.value)
    assert "at epoch 1:" in message
    assert "inputs look unscaled" in message
    assert "scaling.method" in message
    saved = Path(quick_config.checkpoint_dir) / "diverged-epoch-1.pt"
    assert str(saved) in message
    state = torch.load(saved, weights_only=True)
    assert state["epoch"] == 1
    assert leftovers(saved.parent) == []


def test_a_too_large_learning_rate_is_named_with_the_epoch(
    quick_config: TrainingConfig, plane: PlaneData, make_model: MakeModel
) -> None:
    # SGD at lr 0.3 on this data trains for a few epochs, then blows up.
    config = changed(
        quick_config, {"optimizer": "sgd", "lr": 0.3, "epochs": 20, "checkpoint_every": 1}
    )
    seen: list[int] = []
    with pytest.raises(TrainingDivergedError, match=r"lower training\.lr \(now 0\.3\)") as caught:
        fit(make_model(), plane(), plane(seed=1), config, lambda r: seen.append(r.epoch))
    diverged_at = len(seen) + 1  # every finished epoch reached the callback
    assert diverged_at > 1
    assert f"at epoch {diverged_at}:" in str(caught.value)
    folder = Path(config.checkpoint_dir)
    assert torch.load(folder / f"diverged-epoch-{diverged_at}.pt", weights_only=True)["epoch"] == (
        diverged_at
    )
    # The periodic checkpoint still holds the last good epoch, to resume from.
    assert torch.load(folder / "last.pt", weights_only=True)["epoch"] == seen[-1]


def test_non_finite_inputs_are_named_as_the_cause(
    quick_config: TrainingConfig, plane: PlaneData, make_model: MakeModel
) -> None:
    data = plane()
    data[3, 4] = np.nan
    with pytest.raises(TrainingDivergedError, match=r"at epoch 1: the inputs hold 1 NaN"):
        fit(make_model(), data, plane(seed=1), quick_config)


def test_divergence_is_reported_even_when_the_checkpoint_cannot_be_written(
    tmp_path: Path, plane: PlaneData, make_model: MakeModel
) -> None:
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the checkpoint folder should be")
    config = TrainingConfig(epochs=2, checkpoint_dir=str(blocker / "checkpoints"))
    data = plane() * 1e30
    with pytest.raises(TrainingDivergedError, match=r"at epoch 1: .*Saving the state to .* failed"):
        fit(make_model(), data, data, config)
