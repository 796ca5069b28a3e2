"""Choosing the device and the autocast precision."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def resolve_device(requested: str) -> torch.device:
    """Map ``training.device`` (auto, cpu, cuda) to a torch device.

    Raises:
        RuntimeError: if ``cuda`` is requested and no CUDA device is visible.
    """
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            "training.device='cuda' but no CUDA device is visible; use 'auto' or 'cpu'"
        )
    return torch.device(requested)


def resolve_precision(requested: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for ``training.precision``, or None for plain fp32.

    ``auto`` is bf16 on CUDA devices that support it and fp32 elsewhere.
    """
    if requested == "fp32":
        return None
    if requested == "bf16":
        return torch.bfloat16
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    """Autocast to ``dtype`` on ``device``, or do nothing when ``dtype`` is None."""
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield
