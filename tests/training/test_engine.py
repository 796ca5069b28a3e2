"""Precision, optimisers, schedules, clipping and data placement of the fit loop."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from aeops.models import Autoencoder
from aeops.training import EpochRecord, TrainingConfig, fit, resolve_device, resolve_precision
from aeops.training._batches import DeviceResidentData, HostStreamedData, choose_placement
from aeops.training._optim import build_optimizer, build_scheduler, step_scheduler

PlaneData = Callable[..., np.ndarray]
MakeModel = Callable[..., Autoencoder]
WeightsEqual = Callable[[torch.nn.Module, torch.nn.Module], bool]

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CPU = torch.device("cpu")


# Precision -----------------------------------------------------------------------------


def test_auto_precision_is_fp32_on_cpu() -> None:
    assert resolve_precision("auto", CPU) is None
    assert resolve_precision("fp32", CPU) is None
    assert resolve_precision("bf16", CPU) is torch.bfloat16


def test_fp16_off_cuda_is_refused_with_the_alternatives(
    plane: PlaneData, make_model: MakeModel
) -> None:
    with pytest.raises(ValueError, match=r"precision='fp16' needs a CUDA device.*'bf16' or 'fp32'"):
        resolve_precision("fp16", CPU)
    with pytest.raises(ValueError, match="fp16"):
        fit(make_model(), plane(), plane(), TrainingConfig(precision="fp16", device="cpu"))


def test_bf16_autocast_trains_on_cpu_and_keeps_fp32_weights(
    plane: PlaneData, make_model: MakeModel
) -> None:
    model = make_model()
    linear = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
    dtypes: set[torch.dtype] = set()
    linear.register_forward_hook(lambda module, args, out: dtypes.add(out.dtype))
    config = TrainingConfig(epochs=10, batch_size=32, lr=1e-2, precision="bf16", progress=False)
    result = fit(model, plane(), plane(seed=1), config)
    assert dtypes == {torch.bfloat16}  # the layers ran under autocast, in training and validation
    losses = [r.validation_loss for r in result.history]
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.5 * losses[0]
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_auto_device_is_cpu_without_cuda() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == CPU


# Optimisers, schedules, clipping ---------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW), ("sgd", torch.optim.SGD)],
)
def test_each_optimizer_is_selectable_and_trains(
    name: str,
    expected: type[torch.optim.Optimizer],
    plane: PlaneData,
    make_model: MakeModel,
) -> None:
    config = TrainingConfig(
        optimizer=name, lr=5e-2 if name == "sgd" else 1e-2, weight_decay=1e-4, batch_size=32
    )
    model = make_model()
    optimizer = build_optimizer(model.parameters(), config)
    assert type(optimizer) is expected
    assert optimizer.param_groups[0]["weight_decay"] == 1e-4
    if name == "sgd":
        assert optimizer.param_groups[0]["momentum"] == 0.9
    result = fit(model, plane(), plane(seed=1), config.model_copy(update={"epochs": 15}))
    assert result.history[-1].validation_loss < 0.5 * result.history[0].validation_loss


def test_cosine_schedule_anneals_to_min_lr(plane: PlaneData, make_model: MakeModel) -> None:
    config = TrainingConfig.model_validate(
        {"epochs": 9, "lr": 1e-2, "lr_schedule": {"kind": "cosine", "min_lr": 1e-4}}
    )
    lrs = fit(make_model(), plane(), plane(seed=1), config).metric_history()["learning_rate"]
    assert lrs[0] == pytest.approx(1e-2)
    assert all(a > b for a, b in itertools.pairwise(lrs))
    halfway = 1e-4 + (1e-2 - 1e-4) * (1 + np.cos(np.pi * 4 / 9)) / 2
    assert lrs[4] == pytest.approx(halfway)
    assert lrs[-1] > 1e-4


def test_plateau_schedule_lowers_lr_only_after_epochs_without_improvement(
    plane: PlaneData, make_model: MakeModel
) -> None:
    config = TrainingConfig.model_validate(
        {
            "epochs": 40,
            "lr": 5e-2,
            "batch_size": 32,
            "early_stopping": {"enabled": False},
            "lr_schedule": {"kind": "plateau", "factor": 0.5, "patience": 0},
        }
    )
    history = fit(make_model(), plane(), plane(seed=1), config).history
    lrs = [r.learning_rate for r in history]
    losses = [r.validation_loss for r in history]
    drops = [i for i in range(1, len(lrs)) if lrs[i] < lrs[i - 1]]
    assert drops, "the validation loss never stalled; the test needs a stalling run"
    for i in drops:
        assert lrs[i] == pytest.approx(lrs[i - 1] * 0.5)
        # epoch i (0-based: i - 1) did not beat the best before it
        assert losses[i - 1] >= min(losses[: i - 1])


def _plateau_rates(losses: list[float], patience: int, min_lr: float = 0.0) -> list[float]:
    """The rate each epoch trains at, for a plateau schedule fed ``losses``."""
    config = TrainingConfig.model_validate(
        {
            "lr": 1.0,
            "lr_schedule": {
                "kind": "plateau",
                "factor": 0.5,
                "patience": patience,
                "min_lr": min_lr,
            },
        }
    )
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=config.lr)
    scheduler = build_scheduler(optimizer, config)
    rates = []
    for loss in losses:
        rates.append(optimizer.param_groups[0]["lr"])
        step_scheduler(scheduler, loss)
    return rates


def test_plateau_counts_epochs_as_documented_and_any_lower_loss_as_better() -> None:
    # More than `patience` (2) epochs in a row without a lower loss: the fifth epoch
    # trains at half the rate, and so on; the rate never goes below min_lr.
    assert _plateau_rates([1.0] * 8, patience=2) == [1, 1, 1, 1, 0.5, 0.5, 0.5, 0.25]
    assert _plateau_rates([1.0] * 12, patience=0, min_lr=0.2) == [1, 1, 0.5, 0.25] + [0.2] * 8
    # A loss lower by 0.001% each epoch is better each epoch, as for early stopping.
    assert _plateau_rates([1.0 - 1e-5 * i for i in range(8)], patience=2) == [1.0] * 8


def test_gradient_clipping_bounds_each_sgd_step(
    plane: PlaneData, make_model: MakeModel, weights_equal: WeightsEqual
) -> None:
    def distance_travelled(clip: float | None) -> float:
        model = make_model()
        start = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
        config = TrainingConfig(
            epochs=2,
            batch_size=64,  # 4 steps an epoch: 8 steps in all
            lr=0.1,
            optimizer="sgd",
            momentum=0.0,
            grad_clip_norm=clip,
            early_stopping={"enabled": False},
        )
        fit(model, plane(), plane(seed=1), config)
        end = torch.cat([p.detach().flatten().cpu() for p in model.parameters()])
        return float((end - start).norm())

    clipped = distance_travelled(1e-3)
    assert clipped <= 8 * 0.1 * 1e-3 * (1 + 1e-4)
    assert distance_travelled(None) > 100 * clipped


# Data placement ------------------------------------------------------------------------


def test_auto_placement_keeps_data_resident_on_cpu() -> None:
    assert choose_placement("auto", CPU, n_bytes=10**12, memory_fraction=0.5) == "device"
    assert choose_placement("stream", CPU, n_bytes=1, memory_fraction=0.5) == "stream"


@pytest.mark.parametrize("source_cls", [DeviceResidentData, HostStreamedData])
def test_batches_cover_every_row_once_in_the_given_order(source_cls: type) -> None:
    rows = np.arange(50, dtype=np.float32).reshape(25, 2)
    source = source_cls(rows, CPU)
    order = torch.randperm(25, generator=torch.Generator().manual_seed(0))
    batches = list(source.batches(8, order))
    assert [len(b) for b in batches] == [8, 8, 8, 1]
    assert torch.equal(torch.cat(batches)[:, 0], torch.from_numpy(rows[:, 0])[order])
    assert torch.equal(torch.cat(list(source.batches(8))), torch.from_numpy(rows))


def test_streamed_and_resident_data_train_to_the_same_weights(
    plane: PlaneData, make_model: MakeModel, weights_equal: WeightsEqual
) -> None:
    resident, streamed = make_model(), make_model()
    # Bitwise equality on the CPU; the CUDA test below asks for deterministic kernels.
    base = {"epochs": 4, "batch_size": 32, "progress": False, "device": "cpu"}
    fit(resident, plane(), plane(seed=1), TrainingConfig(data_placement="device", **base))
    fit(streamed, plane(), plane(seed=1), TrainingConfig(data_placement="stream", **base))
    assert weights_equal(resident, streamed)


@pytest.mark.skipif(
    os.environ.get("AEOPS_TEST_COMPILE") != "1",
    reason="torch.compile takes tens of seconds; bench/gpu_check.sh sets AEOPS_TEST_COMPILE=1",
)
def test_compiled_loss_trains_and_keeps_state_dict_keys(
    plane: PlaneData, make_model: MakeModel
) -> None:
    model = make_model()
    keys = list(model.state_dict())
    config = TrainingConfig(epochs=3, batch_size=64, lr=1e-2, compile=True)
    result = fit(model, plane(), plane(seed=1), config)
    assert list(model.state_dict()) == keys
    assert result.history[-1].validation_loss < result.history[0].validation_loss


# CUDA (run by bench/gpu_check.sh; skipped here) ---------------------------------------


@needs_cuda
def test_cuda_auto_uses_bf16_where_supported() -> None:
    cuda = torch.device("cuda")
    expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    assert resolve_precision("auto", cuda) is expected


@needs_cuda
@pytest.mark.parametrize("precision", ["auto", "fp32", "fp16"])
def test_cuda_training_reduces_the_loss(
    precision: str, plane: PlaneData, make_model: MakeModel
) -> None:
    config = TrainingConfig(epochs=30, batch_size=32, lr=1e-2, precision=precision)
    model = make_model()
    result = fit(model, plane(), plane(seed=1), config)
    assert result.device.startswith("cuda")
    assert result.history[-1].validation_loss < 0.5 * result.history[0].validation_loss
    assert all(p.device.type == "cuda" for p in model.parameters())


@needs_cuda
def test_cuda_deterministic_runs_and_placements_agree(
    plane: PlaneData, make_model: MakeModel, weights_equal: WeightsEqual
) -> None:
    base = {"epochs": 4, "batch_size": 32, "deterministic": True, "precision": "fp32"}
    models = [make_model() for _ in range(3)]
    for model, placement in zip(models, ["device", "device", "stream"], strict=True):
        fit(model, plane(), plane(seed=1), TrainingConfig(data_placement=placement, **base))
    assert weights_equal(models[0], models[1])
    assert weights_equal(models[0], models[2])
    assert not torch.are_deterministic_algorithms_enabled()  # the global flag is restored


class _StopRunError(Exception):
    """Stands for a killed process."""


def _stop_after_epoch_2(record: EpochRecord) -> None:
    if record.epoch == 2:
        raise _StopRunError


@needs_cuda
def test_cuda_resume_equals_an_uninterrupted_run(
    tmp_path: Path, plane: PlaneData, make_model: MakeModel, weights_equal: WeightsEqual
) -> None:
    def config(folder: str, resume: bool = False) -> TrainingConfig:
        return TrainingConfig(
            epochs=5,
            batch_size=32,
            deterministic=True,
            checkpoint_every=1,
            checkpoint_dir=str(tmp_path / folder),
            resume=resume,
        )

    whole = make_model("noisy_input")
    fit(whole, plane(), plane(seed=1), config("whole"))
    with pytest.raises(_StopRunError):
        fit(make_model("noisy_input"), plane(), plane(seed=1), config("split"), _stop_after_epoch_2)
    resumed = make_model("noisy_input")
    fit(resumed, plane(), plane(seed=1), config("split", resume=True))
    assert weights_equal(whole, resumed)
