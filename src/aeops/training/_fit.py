"""The fit loop: device-resident index batches, one host sync per epoch, checkpoints."""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from aeops.models import Autoencoder, LossOutput, ModelConfigError
from aeops.training._batches import BatchSource, choose_placement, make_batch_source
from aeops.training._checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointMismatchError,
    capture_rng,
    check_fingerprint,
    clone_state,
    diverged_path,
    history_to_state,
    latest_path,
    load_checkpoint,
    restore_rng,
    run_fingerprint,
    save_atomically,
)
from aeops.training._config import EarlyStoppingConfig, TrainingConfig
from aeops.training._device import (
    autocast,
    deterministic_algorithms,
    resolve_device,
    resolve_precision,
)
from aeops.training._optim import build_optimizer, build_scheduler, current_lr, step_scheduler
from aeops.training._progress import epoch_progress
from aeops.training._records import EpochRecord, FitResult, TrainingDivergedError

logger = logging.getLogger(__name__)

LossFunction = Callable[[Tensor], LossOutput]

# Inputs this large after scaling are almost always unscaled raw values.
_UNSCALED_INPUT = 1e4

# Validation batches are this many training batches: a forward pass without gradients
# keeps no activations, so the larger batch usually fits where a training step does,
# and a launch-bound GPU spends a quarter of the kernel launches on validation. Where
# it does not fit (a wide convolution on a nearly full GPU), validation falls back to
# the training batch. Objectives that average per sample or per element give the same
# loss at any batch; a sparse-KL penalty, taken on the batch's mean activations, is a
# little lower on larger batches, the same way every epoch.
_VALIDATION_BATCH_FACTOR = 4


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch's global RNGs (CPU and every CUDA device) and return a batch-order generator."""
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


@dataclass
class _EarlyStopping:
    """The best validation loss so far, the weights that reached it, and the patience left."""

    config: EarlyStoppingConfig
    best_loss: float = math.inf
    best_epoch: int = 0
    stale_epochs: int = 0
    stopped: bool = False
    best_state: dict[str, Tensor] = field(default_factory=dict)

    def observe(self, epoch: int, validation_loss: float, model: Autoencoder) -> bool:
        """Record an epoch's validation loss; True when training should stop."""
        if validation_loss < self.best_loss - self.config.min_delta:
            self.best_loss, self.best_epoch, self.stale_epochs = validation_loss, epoch, 0
            self.best_state = clone_state(model.state_dict())
        else:
            self.stale_epochs += 1
        self.stopped = self.config.enabled and self.stale_epochs >= self.config.patience
        return self.stopped

    def to_state(self) -> dict[str, Any]:
        """The bookkeeping as a checkpoint entry."""
        return {
            "best_loss": self.best_loss,
            "best_epoch": self.best_epoch,
            "stale_epochs": self.stale_epochs,
            "stopped": self.stopped,
            "best_state": self.best_state,
        }

    def load_state(self, state: dict[str, Any], device: torch.device) -> None:
        """Restore the bookkeeping from :meth:`to_state` output."""
        self.best_loss = float(state["best_loss"])
        self.best_epoch = int(state["best_epoch"])
        self.stale_epochs = int(state["stale_epochs"])
        self.stopped = bool(state["stopped"])
        self.best_state = {name: value.to(device) for name, value in state["best_state"].items()}


class _Stepper:
    """One optimisation step: forward under autocast, backward, optional clipping, update.

    Nothing here reads a value back to the host: clipping uses the on-device norm and
    an fp16 GradScaler with a fused optimiser skips bad steps on the device.
    """

    def __init__(
        self,
        loss_fn: LossFunction,
        model: Autoencoder,
        optimizer: torch.optim.Optimizer,
        device: torch.device,
        dtype: torch.dtype | None,
        grad_clip_norm: float | None,
    ) -> None:
        self.loss_fn = loss_fn
        self.optimizer = optimizer
        self.device = device
        self.dtype = dtype
        self.grad_clip_norm = grad_clip_norm
        self.parameters = [p for p in model.parameters() if p.requires_grad]
        # bf16 has fp32's exponent range; only fp16 gradients need loss scaling.
        self.scaler = torch.amp.GradScaler("cuda") if dtype is torch.float16 else None

    def __call__(self, batch: Tensor) -> LossOutput:
        with autocast(self.device, self.dtype):
            output = self.loss_fn(batch)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            output.total.backward()
            self._clip()
            self.optimizer.step()
        else:
            self.scaler.scale(output.total).backward()
            if self.grad_clip_norm is not None:
                self.scaler.unscale_(self.optimizer)  # clip true gradients, not scaled ones
            self._clip()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        return output

    def _clip(self) -> None:
        if self.grad_clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(
                self.parameters, self.grad_clip_norm, error_if_nonfinite=False
            )


def _validation_loss(
    model: Autoencoder,
    loss_fn: LossFunction,
    data: BatchSource,
    batch_size: int,
    device: torch.device,
    dtype: torch.dtype | None,
) -> Tensor:
    """Mean training objective over ``data`` in eval mode, kept on the device."""
    model.eval()
    total = torch.zeros((), device=device)
    with torch.no_grad():
        for batch in data.batches(batch_size):
            with autocast(device, dtype):
                loss = loss_fn(batch).total
            total.add_(loss.detach().float(), alpha=batch.shape[0])
    return total / data.n_rows


def _n_values(array: np.ndarray | Tensor) -> int:
    return math.prod(tuple(array.shape))


class _FitRun:
    """The state of one call of :func:`fit`, so each part of the loop is a short method."""

    def __init__(
        self,
        model: Autoencoder,
        train: np.ndarray | Tensor,
        validation: np.ndarray | Tensor,
        config: TrainingConfig,
        device: torch.device,
        dtype: torch.dtype | None,
    ) -> None:
        self.model = model
        self.config = config
        self.device = device
        self.dtype = dtype
        # Digesting the data costs a pass over it: only runs that checkpoint pay it.
        self._fingerprint_inputs = (train, validation)
        self.batch_order = seed_everything(config.seed)
        model.to(device)
        n_bytes = 4 * (_n_values(train) + _n_values(validation))
        self.placement = choose_placement(
            config.data_placement, device, n_bytes, config.device_memory_fraction
        )
        if device.type == "cuda":
            # Draw the permutation on the device, whatever the placement: resident data
            # needs no host randperm and copy per epoch, and both placements see the
            # same batches (streamed data copies the order to the host once an epoch).
            self.batch_order = torch.Generator(device=device).manual_seed(config.seed)
        self.train_data = make_batch_source(train, device, self.placement)
        self.validation_data = make_batch_source(validation, device, self.placement)
        self.batch_size = min(config.batch_size, self.train_data.n_rows)
        self.validation_batch_size = min(
            _VALIDATION_BATCH_FACTOR * self.batch_size, self.validation_data.n_rows
        )
        self.optimizer = build_optimizer(model.parameters(), config)
        self.scheduler = build_scheduler(self.optimizer, config)
        # Compiling the bound method leaves the module (and its state_dict keys) as is.
        self.loss_fn: LossFunction = torch.compile(model.loss) if config.compile else model.loss
        self.stepper = _Stepper(
            self.loss_fn, model, self.optimizer, device, dtype, config.grad_clip_norm
        )
        self.stopping = _EarlyStopping(config.early_stopping)
        self.history: list[EpochRecord] = []
        self.first_epoch = 1
        self.resumed_from: int | None = None

    # Checkpoints ------------------------------------------------------------------

    @functools.cached_property
    def fingerprint(self) -> dict[str, str]:
        """What a checkpoint of this run records, and a resumed run must match."""
        train, validation = self._fingerprint_inputs
        return run_fingerprint(self.model, self.config, train, validation)

    def checkpoint_state(self, epoch: int) -> dict[str, Any]:
        """Everything needed to continue after ``epoch`` as if the run had not stopped."""
        scheduler, scaler = self.scheduler, self.stepper.scaler
        return {
            "format": CHECKPOINT_FORMAT,
            "epoch": epoch,
            "fingerprint": self.fingerprint,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "grad_scaler": scaler.state_dict() if scaler is not None else None,
            "rng": capture_rng(self.batch_order),
            "history": history_to_state(self.history),
            "early_stopping": self.stopping.to_state(),
        }

    def resume(self) -> None:
        """Continue from ``<checkpoint_dir>/last.pt`` when ``training.resume`` is on."""
        if self.config.checkpoint_every == 0:
            logger.warning(
                "training.resume is on, but training.checkpoint_every is 0: this run saves "
                "no checkpoint, so if it stops, a rerun resumes from nothing it trained; set "
                "training.checkpoint_every (1 saves every epoch)"
            )
        path = latest_path(self.config)
        if not path.exists():
            logger.info("training.resume is on but %s does not exist: starting at epoch 1", path)
            return
        state = load_checkpoint(path)
        check_fingerprint(path, state["fingerprint"], self.fingerprint)
        trained = int(state["epoch"])
        if trained > self.config.epochs:
            raise CheckpointMismatchError(
                f"{path} has trained {trained} epochs, more than training.epochs="
                f"{self.config.epochs}: resuming would return a longer run than asked for. "
                f"Set training.epochs to at least {trained}, or training.resume: false to "
                "start over"
            )
        self.model.load_state_dict(state["model"])
        implementation = [
            {key: group.get(key) for key in ("fused", "foreach")}
            for group in self.optimizer.param_groups
        ]
        self.optimizer.load_state_dict(state["optimizer"])
        # The checkpoint may come from another device: keep this device's kernels.
        for group, kernels in zip(self.optimizer.param_groups, implementation, strict=True):
            group.update(kernels)
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.stepper.scaler is not None and state["grad_scaler"] is not None:
            self.stepper.scaler.load_state_dict(state["grad_scaler"])
        self.history = [EpochRecord.from_dict(values) for values in state["history"]]
        self.stopping.load_state(state["early_stopping"], self.device)
        restore_rng(state["rng"], self.batch_order)
        self.resumed_from = int(state["epoch"])
        self.first_epoch = self.resumed_from + 1
        logger.info("Resumed from %s after epoch %d", path, self.resumed_from)

    def _checkpoint_due(self, epoch: int, last: bool) -> bool:
        every = self.config.checkpoint_every
        return every > 0 and (epoch % every == 0 or last)

    # The loop ----------------------------------------------------------------------

    def run_epoch(self, epoch: int) -> EpochRecord:
        """Train one epoch and measure it; the one host sync happens at its end."""
        self.model.on_epoch_start(epoch, self.config.epochs)
        learning_rate = current_lr(self.optimizer)
        self.model.train()
        started = time.perf_counter()
        order = torch.randperm(
            self.train_data.n_rows, generator=self.batch_order, device=self.batch_order.device
        )
        loss_sum = torch.zeros((), device=self.device)
        term_sums: dict[str, Tensor] = {}
        for batch in self.train_data.batches(self.batch_size, order):
            output = self.stepper(batch)
            rows = batch.shape[0]
            loss_sum.add_(output.total.detach().float(), alpha=rows)
            for name, value in output.terms.items():
                if value is output.total:
                    # A term that is the total (a vanilla objective) shares its sum.
                    term_sums.setdefault(name, loss_sum)
                    continue
                if name not in term_sums:
                    term_sums[name] = torch.zeros((), device=self.device)
                term_sums[name].add_(value.detach().float(), alpha=rows)
        validation_loss = self.validation_loss()
        # The one host sync of the epoch: every sum comes back in one transfer.
        sums = torch.stack([loss_sum, validation_loss, *term_sums.values()]).tolist()
        elapsed = time.perf_counter() - started
        n_train = self.train_data.n_rows
        return EpochRecord(
            epoch=epoch,
            train_loss=sums[0] / n_train,
            validation_loss=sums[1],
            samples_per_second=n_train / elapsed if elapsed > 0 else math.inf,
            terms={name: total / n_train for name, total in zip(term_sums, sums[2:], strict=True)},
            learning_rate=learning_rate,
            finished_at=time.time(),
        )

    def validation_loss(self) -> Tensor:
        """The epoch's validation loss, on the training batch if the larger one is too big."""
        while True:
            try:
                return _validation_loss(
                    self.model,
                    self.loss_fn,
                    self.validation_data,
                    self.validation_batch_size,
                    self.device,
                    self.dtype,
                )
            except torch.cuda.OutOfMemoryError:
                if self.validation_batch_size <= self.batch_size:
                    raise
                logger.info(
                    "Validation batches of %d rows do not fit on %s: using %d, the training batch",
                    self.validation_batch_size,
                    self.device,
                    self.batch_size,
                )
                self.validation_batch_size = self.batch_size
                torch.cuda.empty_cache()  # a no-op where CUDA never started

    def diverged(self, record: EpochRecord) -> TrainingDivergedError:
        """Save the diverged state and explain the likely cause."""
        path = diverged_path(self.config, record.epoch)
        try:
            save_atomically(self.checkpoint_state(record.epoch), path)
            saved = f"The state at that epoch is saved in {path}"
        except OSError as error:
            # The divergence is the news; a failed save must not hide it.
            saved = f"Saving the state to {path} failed ({error})"
        which = "training" if not math.isfinite(record.train_loss) else "validation"
        value = record.train_loss if which == "training" else record.validation_loss
        return TrainingDivergedError(
            f"{which} loss became {value} at epoch {record.epoch}: {self._likely_cause()}. "
            f"{saved}; training stopped and nothing was registered."
        )

    def _likely_cause(self) -> str:
        non_finite = self.train_data.non_finite_count() + self.validation_data.non_finite_count()
        if non_finite:
            return (
                f"the inputs hold {non_finite} NaN or infinite values; clean them before "
                "training (data validation should have refused them)"
            )
        largest = max(self.train_data.max_abs(), self.validation_data.max_abs())
        lr = f"lower training.lr (now {self.config.lr:g})"
        if largest > _UNSCALED_INPUT:
            return (
                f"the inputs look unscaled (largest |x| is {largest:.3g}); set scaling.method "
                f"(standard, robust or minmax), or {lr}"
            )
        advice = f"{lr} or set training.grad_clip_norm"
        if self.dtype is torch.float16:
            advice += ", or use training.precision bf16 or fp32 (fp16 overflows above 65504)"
        return advice

    def run(self, on_epoch_end: Callable[[EpochRecord], None] | None) -> FitResult:
        """Train from :attr:`first_epoch` to the end or an early stop."""
        config = self.config
        logger.info(
            "Training %s/%s on %s (%s, data %s) for up to %d epochs from epoch %d: "
            "%d rows, batch %d, %s, lr %g, schedule %s",
            self.model.config.kind,
            self.model.config.architecture,
            self.device,
            self.dtype or torch.float32,
            self.placement,
            config.epochs,
            self.first_epoch,
            self.train_data.n_rows,
            self.batch_size,
            config.optimizer,
            config.lr,
            config.lr_schedule.kind,
        )
        checkpoint = latest_path(config)
        with epoch_progress(config.progress, config.epochs, self.first_epoch) as show:
            for epoch in range(self.first_epoch, config.epochs + 1):
                if self.stopping.stopped:  # resumed from a run that had already stopped
                    break
                record = self.run_epoch(epoch)
                if not (math.isfinite(record.train_loss) and math.isfinite(record.validation_loss)):
                    raise self.diverged(record)
                self.history.append(record)
                stop = self.stopping.observe(epoch, record.validation_loss, self.model)
                step_scheduler(self.scheduler, record.validation_loss)
                logger.debug(
                    "epoch %d: train %.6g, validation %.6g, lr %.3g, %.0f samples/s",
                    epoch,
                    record.train_loss,
                    record.validation_loss,
                    record.learning_rate,
                    record.samples_per_second,
                )
                if self._checkpoint_due(epoch, last=stop or epoch == config.epochs):
                    save_atomically(self.checkpoint_state(epoch), checkpoint)
                show(record)
                if on_epoch_end is not None:
                    on_epoch_end(record)
                if stop:
                    logger.info(
                        "Early stop at epoch %d: best validation loss %.6g at epoch %d",
                        epoch,
                        self.stopping.best_loss,
                        self.stopping.best_epoch,
                    )
                    break
        return self._result(checkpoint if config.checkpoint_every else None)

    def _result(self, checkpoint: Path | None) -> FitResult:
        if self.config.early_stopping.enabled and self.stopping.best_state:
            self.model.load_state_dict(self.stopping.best_state)
            best_epoch, best_loss = self.stopping.best_epoch, self.stopping.best_loss
        else:
            best_epoch, best_loss = self.history[-1].epoch, self.history[-1].validation_loss
        self.model.eval()
        return FitResult(
            history=self.history,
            best_epoch=best_epoch,
            best_validation_loss=best_loss,
            stopped_early=self.stopping.stopped,
            device=str(self.device),
            resumed_from_epoch=self.resumed_from,
            checkpoint_path=str(checkpoint) if checkpoint is not None else None,
        )


def fit(
    model: Autoencoder,
    train: np.ndarray | Tensor,
    validation: np.ndarray | Tensor,
    config: TrainingConfig,
    on_epoch_end: Callable[[EpochRecord], None] | None = None,
) -> FitResult:
    """Train ``model`` in place on ``train``, stopping early on ``validation`` loss.

    The training and validation sets live on the device as one tensor each when they
    fit (else they stream from pinned host memory); batches are slices of a seeded
    random permutation, and losses are summed on the device and read once per epoch,
    so no step waits for the host. With early stopping on, the best weights seen are
    restored at the end. With ``checkpoint_every`` set, the full state is saved
    atomically every so many epochs, and ``resume`` continues from it to the same
    final weights as an uninterrupted run.

    Args:
        model: an untrained (or partly trained) autoencoder; its ``loss`` is the objective.
        train: training inputs, (N, *input_shape) float32.
        validation: validation inputs, (M, *input_shape); must be non-empty.
        config: the ``training`` block.
        on_epoch_end: called with each epoch's record (progress, logging), after the
            epoch's checkpoint is written.

    Returns:
        The history and where the best epoch was.

    Raises:
        TypeError: if a set is neither a numpy array nor a torch tensor.
        ValueError: if either set is empty, their sample shapes differ, the
            precision does not suit the device, or a ``bce`` model's training samples
            leave [0, 1].
        RuntimeError: if ``training.device`` is ``cuda`` and no CUDA device is visible.
        CheckpointMismatchError: if ``resume`` finds a checkpoint of another run.
        TrainingDivergedError: if a loss becomes NaN or infinite (after saving the
            diverged state under ``checkpoint_dir``).
    """
    for name, samples in (("train", train), ("validation", validation)):
        if not isinstance(samples, np.ndarray | Tensor):
            raise TypeError(
                f"fit takes {name} samples as a numpy array or a torch tensor, "
                f"(N, *input_shape), not {type(samples).__name__}; turn rows into samples "
                "with input_spec.samples(frame, scaler)"
            )
    if len(train) == 0 or len(validation) == 0:
        raise ValueError(
            f"fit needs non-empty train and validation sets, got {len(train)} and "
            f"{len(validation)} rows"
        )
    if tuple(train.shape[1:]) != tuple(validation.shape[1:]):
        raise ValueError(
            f"train and validation samples differ in shape: {tuple(train.shape[1:])} and "
            f"{tuple(validation.shape[1:])}"
        )
    if model.config.reconstruction_loss == "bce":
        low, high = float(train.min()), float(train.max())
        if low < 0.0 or high > 1.0:
            raise ModelConfigError(
                "model.reconstruction_loss=bce needs inputs in [0, 1] (image pixels, or "
                f"scaling.method: minmax), but the training samples span [{low:.4g}, "
                f"{high:.4g}]; use mse or l1 with standard or robust scaling"
            )
    device = resolve_device(config.device)
    dtype = resolve_precision(config.precision, device)
    with deterministic_algorithms(config.deterministic):
        run = _FitRun(model, train, validation, config, device, dtype)
        if config.resume:
            run.resume()
        return run.run(on_epoch_end)
