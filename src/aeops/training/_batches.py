"""Where the training data lives during a fit, and how batches are cut from it.

Two placements, chosen by ``training.data_placement``:

- ``device``: the whole set is one tensor on the training device, and a batch is an
  index slice of it (``data[order[i:i + B]]``): no per-sample ``Dataset``, no
  ``DataLoader``, no host round trip per step.
- ``stream``: the set stays in (pinned) host memory; each batch is gathered on the
  host into a pinned staging buffer and copied with a non-blocking copy on a side
  CUDA stream, one batch ahead of the step that uses it.

``auto`` keeps data on the device when it fits in a fraction of the free device
memory. Both placements yield the same batches in the same order, so a run gives
the same numbers either way.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Literal, Protocol

import numpy as np
import torch
from torch import Tensor

logger = logging.getLogger(__name__)

Placement = Literal["device", "stream"]


class BatchSource(Protocol):
    """Rows of one data set, served as batches on the training device."""

    @property
    def n_rows(self) -> int:
        """Number of rows (samples)."""
        ...

    def batches(self, batch_size: int, order: Tensor | None = None) -> Iterator[Tensor]:
        """Yield (B, *input_shape) batches on the device.

        Args:
            batch_size: rows per batch; the last batch may be smaller.
            order: a permutation of the row indices (on the CPU or on the device), or
                None for the stored order.
        """
        ...

    def non_finite_count(self) -> int:
        """How many values are NaN or infinite (diagnostics after a divergence)."""
        ...

    def max_abs(self) -> float:
        """The largest finite absolute value (diagnostics after a divergence)."""
        ...


def as_float32_tensor(array: np.ndarray | Tensor) -> Tensor:
    """View ``array`` as a float32 CPU or device tensor, copying only to convert dtype."""
    return torch.as_tensor(array, dtype=torch.float32)


def choose_placement(
    requested: str, device: torch.device, n_bytes: int, memory_fraction: float
) -> Placement:
    """Resolve ``training.data_placement`` for ``n_bytes`` of training and validation data.

    On a CPU the host memory is the device memory, so ``auto`` is ``device``. On CUDA,
    ``auto`` is ``device`` when the data takes at most ``memory_fraction`` of the free
    device memory, leaving the rest for weights, activations and the allocator.
    """
    if requested in ("device", "stream"):
        return requested  # type: ignore[return-value]
    if device.type != "cuda":
        return "device"
    free, _total = torch.cuda.mem_get_info(device)
    fits = n_bytes <= memory_fraction * free
    logger.info(
        "Data needs %.1f MiB, %.1f MiB free on %s: %s",
        n_bytes / 2**20,
        free / 2**20,
        device,
        "resident on the device" if fits else "streamed from pinned host memory",
    )
    return "device" if fits else "stream"


class _TensorData:
    """Diagnostics shared by both placements; ``data`` is the stored tensor."""

    data: Tensor

    @property
    def n_rows(self) -> int:
        """Number of rows."""
        return int(self.data.shape[0])

    def non_finite_count(self) -> int:
        """Number of NaN or infinite values."""
        return int((~torch.isfinite(self.data)).sum())

    def max_abs(self) -> float:
        """Largest finite absolute value."""
        finite = self.data[torch.isfinite(self.data)]
        return float(finite.abs().max()) if finite.numel() else 0.0


class DeviceResidentData(_TensorData):
    """The whole data set as one tensor on the device; batches are index slices."""

    def __init__(self, array: np.ndarray | Tensor, device: torch.device) -> None:
        self.data = as_float32_tensor(array).to(device)
        self.device = device

    def batches(self, batch_size: int, order: Tensor | None = None) -> Iterator[Tensor]:
        """Yield index slices (``order``) or plain slices (no order) of the resident tensor."""
        if order is None:
            for start in range(0, self.n_rows, batch_size):
                yield self.data[start : start + batch_size]
            return
        order = order.to(self.device, non_blocking=True)
        for start in range(0, self.n_rows, batch_size):
            yield self.data[order[start : start + batch_size]]


class HostStreamedData(_TensorData):
    """The data set in host memory, copied to the device one batch ahead of its step."""

    def __init__(self, array: np.ndarray | Tensor, device: torch.device) -> None:
        host = as_float32_tensor(array).cpu()
        # Pinned pages let the copy engine read host memory while the host goes on.
        self.pinned = device.type == "cuda"
        self.data = host.pin_memory() if self.pinned else host
        self.device = device

    def batches(self, batch_size: int, order: Tensor | None = None) -> Iterator[Tensor]:
        """Yield batches copied from host memory, overlapping copy and compute on CUDA."""
        if order is not None:
            order = order.cpu()  # drawn on the device on CUDA; the gather runs on the host
        if not self.pinned:
            # Host training: a gather is all there is to do.
            yield from self._host_batches(batch_size, order)
            return
        yield from self._cuda_batches(batch_size, order)

    def _rows(self, start: int, batch_size: int, order: Tensor | None) -> Tensor | slice:
        if order is None:
            return slice(start, start + batch_size)
        return order[start : start + batch_size]

    def _host_batches(self, batch_size: int, order: Tensor | None) -> Iterator[Tensor]:
        for start in range(0, self.n_rows, batch_size):
            yield self.data[self._rows(start, batch_size, order)]

    def _cuda_batches(self, batch_size: int, order: Tensor | None) -> Iterator[Tensor]:
        compute_stream = torch.cuda.current_stream(self.device)
        copy_stream = torch.cuda.Stream(self.device)
        batch_shape = (min(batch_size, self.n_rows), *self.data.shape[1:])
        # Two staging buffers: the host fills one while the other's copy is in flight.
        staging = [torch.empty(batch_shape, pin_memory=True) for _ in range(2)]
        copied: list[torch.cuda.Event | None] = [None, None]

        def stage(slot: int, start: int) -> tuple[Tensor, torch.cuda.Event]:
            previous = copied[slot]
            if previous is not None:
                previous.synchronize()  # the buffer's last copy must finish before reuse
            rows = self._rows(start, batch_size, order)
            n = min(batch_size, self.n_rows - start)
            buffer = staging[slot][:n]
            if isinstance(rows, slice):
                buffer.copy_(self.data[rows])
            else:
                torch.index_select(self.data, 0, rows, out=buffer)
            with torch.cuda.stream(copy_stream):
                on_device = buffer.to(self.device, non_blocking=True)
                done = torch.cuda.Event()
                done.record(copy_stream)
            copied[slot] = done
            return on_device, done

        starts = list(range(0, self.n_rows, batch_size))
        pending = stage(0, starts[0])
        for index in range(len(starts)):
            batch, done = pending
            if index + 1 < len(starts):
                pending = stage((index + 1) % 2, starts[index + 1])
            compute_stream.wait_event(done)
            # The batch was allocated on the copy stream but is used on the compute one.
            batch.record_stream(compute_stream)
            yield batch


def make_batch_source(
    array: np.ndarray | Tensor, device: torch.device, placement: Placement
) -> BatchSource:
    """Place ``array`` for training as ``placement`` says."""
    if placement == "device":
        return DeviceResidentData(array, device)
    return HostStreamedData(array, device)
