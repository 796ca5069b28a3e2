"""Choosing the device, the autocast precision and the determinism settings."""

from __future__ import annotations

import contextlib
import os
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

    ``auto`` is bf16 on CUDA devices that support it and fp32 elsewhere: bf16 autocast
    on a CPU is correct but rarely faster, so it is only used when asked for.

    Raises:
        ValueError: if ``fp16`` is asked for off CUDA (it needs a CUDA GradScaler), or
            ``bf16`` on a CUDA device without bf16 support.
    """
    if requested == "fp32":
        return None
    if requested == "fp16":
        if device.type != "cuda":
            raise ValueError(
                f"training.precision='fp16' needs a CUDA device (fp16 autocast with a "
                f"GradScaler), but training runs on {device.type}; use 'bf16' or 'fp32'"
            )
        return torch.float16
    if requested == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError(
                "training.precision='bf16' but this CUDA device does not support bf16; "
                "use 'fp16' or 'fp32'"
            )
        return torch.bfloat16
    if requested != "auto":
        raise ValueError(
            f"training.precision={requested!r} is unknown; choose one of: auto, bf16, fp16, fp32"
        )
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


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool) -> Iterator[None]:
    """Within the block, make CUDA kernels deterministic when ``enabled``.

    CPU training is deterministic for a given seed without this; on CUDA some kernels
    (atomics in reductions, cuBLAS workspaces) are not, and forcing deterministic ones
    costs speed, hence a flag. The global settings are restored on exit so one fit
    does not change the behaviour of the rest of the process.
    """
    if not enabled:
        yield
        return
    previous = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    # cuBLAS reads this when it creates a handle; without it deterministic mode raises.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.backends.cudnn.deterministic = previous[2]
        torch.backends.cudnn.benchmark = previous[3]
