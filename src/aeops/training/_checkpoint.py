"""Checkpoints of a fit: written atomically, read back with ``weights_only=True``.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts (state
dicts, RNG states as byte tensors, the epoch history), so loading it never unpickles
code. It holds everything the loop needs to continue as if it had never stopped.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from aeops.training._config import TrainingConfig

if TYPE_CHECKING:
    from aeops.models import Autoencoder
    from aeops.training._records import EpochRecord

logger = logging.getLogger(__name__)

#: bumped when the layout changes, so an old file is refused with a clear message.
CHECKPOINT_FORMAT = 1
LATEST_NAME = "last.pt"

# Settings that shape the optimisation trajectory: resuming under different values
# would silently mix two runs, so a change is an error that names the key.
_TRAJECTORY_KEYS = (
    "batch_size",
    "lr",
    "weight_decay",
    "optimizer",
    "momentum",
    "lr_schedule",
    "grad_clip_norm",
    "precision",
    "seed",
    "early_stopping",
)


class CheckpointMismatchError(ValueError):
    """``training.resume`` found a checkpoint written by a different run."""


def latest_path(config: TrainingConfig) -> Path:
    """Where the periodic checkpoint of a run lives (``<checkpoint_dir>/last.pt``)."""
    return Path(config.checkpoint_dir) / LATEST_NAME


def diverged_path(config: TrainingConfig, epoch: int) -> Path:
    """Where the state of a run whose loss became non-finite at ``epoch`` is saved."""
    return Path(config.checkpoint_dir) / f"diverged-epoch-{epoch}.pt"


def data_digest(data: np.ndarray | Tensor) -> str:
    """A digest of an array's shape, dtype and values: resuming on other data of the
    same shape would silently continue one run on another's rows."""
    if isinstance(data, Tensor):
        tensor = data.detach().cpu()
        values = (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).numpy()
    else:
        values = np.asarray(data)
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{values.dtype.str}{list(values.shape)}".encode())
    digest.update(np.ascontiguousarray(values).data)
    return digest.hexdigest()


def run_fingerprint(
    model: Autoencoder,
    config: TrainingConfig,
    train: np.ndarray | Tensor,
    validation: np.ndarray | Tensor,
) -> dict[str, str]:
    """What must match for a checkpoint to belong to this run, as comparable strings."""
    settings = config.model_dump(include=set(_TRAJECTORY_KEYS))
    if config.lr_schedule.kind == "cosine":
        settings["epochs"] = config.epochs  # the cosine period is the run's length
    parameters = ", ".join(
        f"{name}{list(value.shape)}" for name, value in model.state_dict().items()
    )
    return {
        "model": f"{type(model).__qualname__} {model.config.model_dump_json()}",
        "parameters": parameters,
        "train_shape": str(list(train.shape)),
        "validation_shape": str(list(validation.shape)),
        "train_data": data_digest(train),
        "validation_data": data_digest(validation),
        **{f"training.{key}": str(value) for key, value in sorted(settings.items())},
    }


def capture_rng(batch_order: torch.Generator) -> dict[str, Any]:
    """Every RNG state the loop draws from, as CPU byte tensors."""
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "batch_order": batch_order.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], batch_order: torch.Generator) -> None:
    """Put back the RNG states saved by :func:`capture_rng`."""
    torch.set_rng_state(state["torch"])
    try:
        batch_order.set_state(state["batch_order"])
    except (RuntimeError, ValueError):
        # A CPU run resumed on CUDA (or back), or a checkpoint of a streamed CUDA run
        # from before the batch order was drawn on the device: generator states differ
        # in kind, so the batch order goes on from the seed; the weights, optimiser and
        # epoch carry on, but the run no longer matches an uninterrupted one bit for bit.
        logger.warning(
            "The checkpoint's batch-order RNG is for another device; reseeded, so the "
            "resumed run's batches differ from an uninterrupted run's"
        )
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def history_to_state(history: list[EpochRecord]) -> list[dict[str, Any]]:
    """Epoch records as plain dicts (loadable with ``weights_only=True``)."""
    return [asdict(record) for record in history]


def save_atomically(state: dict[str, Any], path: Path) -> Path:
    """Write ``state`` to ``path`` so that a reader sees the old file or the new one.

    The bytes go to a temporary file in the same folder, are flushed to disk, and the
    file is renamed over ``path``: a crash mid-write leaves no half-written checkpoint.
    An error removes the temporary file; a kill (SIGKILL, power loss) can leave it, a
    hidden ``.<name>.<pid>.<id>.tmp`` that :func:`load_checkpoint` never reads.

    Returns:
        ``path``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique name in the same folder (so the rename stays on one file system), created
    # exclusively with the usual permissions (mkstemp's files would be private).
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        with temporary.open("xb") as file:
            torch.save(state, file)
            file.flush()
            os.fsync(file.fileno())
        temporary.replace(path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint onto the CPU without unpickling any code.

    Raises:
        CheckpointMismatchError: if the file is of another checkpoint format.
    """
    state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointMismatchError(
            f"{path} is not an aeops checkpoint of format {CHECKPOINT_FORMAT} "
            f"(found {state.get('format')!r}); delete it or set training.resume=false"
        )
    return state


def check_fingerprint(path: Path, saved: dict[str, str], current: dict[str, str]) -> None:
    """Refuse to resume from a checkpoint of another run, naming what differs.

    Raises:
        CheckpointMismatchError: if any fingerprint entry differs.
    """
    differences = [
        f"  {key}: {saved.get(key)!r} in the checkpoint, {current.get(key)!r} now"
        for key in sorted(saved.keys() | current.keys())
        if saved.get(key) != current.get(key)
    ]
    if differences:
        raise CheckpointMismatchError(
            f"training.resume found {path}, written by a different run:\n"
            + "\n".join(differences)
            + "\nset training.resume=false to start over, or point training.checkpoint_dir "
            "at this run's checkpoints"
        )


def clone_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Detached copies of a state dict's tensors, on their current device."""
    return {name: value.detach().clone() for name, value in state.items()}
