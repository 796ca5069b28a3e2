"""Linear layers for inference on the CPU: fast, and the same bits in any batch.

On the CPU, torch's ``F.linear`` goes to the BLAS torch was built with (MKL in the x86
wheels). For the narrow layers of these networks, oneDNN's inner product, which torch
also ships, is much faster where it runs: on a 2-core AMD EPYC with torch 2.13 the
benchmark's 64 -> 64 -> 32 -> 16 encoder ran 2.3x as fast (5.1 ms per 65,536 rows,
against 12.2 ms). Within :class:`CpuLinear`, ``F.linear`` calls on float32 matrices
go to oneDNN when :func:`onednn_linear_available`, and stay on ``F.linear`` otherwise.

Either way a row gets the same bits in a batch of any size (tested). Both kernels
compute the smallest batches another way, with other bits (oneDNN one row, MKL one to
three rows on that machine), so a matrix of fewer than :data:`MIN_ROWS` rows is
computed with zero rows appended. The two kernels' answers differ within float32
rounding; the predictor uses one of them for all of its CPU work in a process, so
evaluation, the batch jobs and the served model agree bit for bit on one machine.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

logger = logging.getLogger(__name__)

#: Matrices with fewer rows are computed padded to this many (see the module).
MIN_ROWS = 64


def _onednn_linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """oneDNN's inner product, with no activation fused (torch's own activations follow)."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


@functools.cache
def onednn_linear_available() -> bool:
    """Whether this torch build runs oneDNN's linear here, with ``F.linear``'s answers.

    Checked once per process on a small probe; any failure (a build without oneDNN,
    an operator that moved) leaves the predictor on ``F.linear``.
    """
    try:
        if not torch.backends.mkldnn.is_available():
            return False
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(5, 7, generator=generator)
        weight = torch.randn(3, 7, generator=generator)
        bias = torch.randn(3, generator=generator)
        with torch.inference_mode():
            return bool(torch.allclose(_onednn_linear(x, weight, bias), F.linear(x, weight, bias)))
    except Exception as error:  # any failure only means: not here
        logger.debug("oneDNN linear is not usable here: %s", error)
        return False


class CpuLinear(TorchFunctionMode):
    """Within it, ``F.linear`` on float32 CPU matrices runs as the module says.

    Anything else (other dtypes or devices, batched inputs, gradients to record,
    which oneDNN's linear has no backward for) is left to ``F.linear`` as called.
    Modes are per thread, so other threads are not affected.

    Args:
        onednn: run on oneDNN; only where :func:`onednn_linear_available` says so.
    """

    def __init__(self, onednn: bool) -> None:
        super().__init__()
        self.onednn = onednn

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        if func is F.linear:
            x, weight, bias = _linear_arguments(*args, **kwargs)
            if _eligible(x, weight, bias):
                return self._linear(x, weight, bias)
        return func(*args, **kwargs)

    def _linear(
        self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        rows = x.shape[0]
        if rows < MIN_ROWS:
            padded = x.new_zeros((MIN_ROWS, x.shape[1]))
            padded[:rows] = x
            return self._linear(padded, weight, bias)[:rows]
        if self.onednn:  # its kernels need row-major operands
            return _onednn_linear(x.contiguous(), weight.contiguous(), bias)
        return F.linear(x, weight, bias)  # BLAS reads a column-major x in place


def _linear_arguments(
    input: Any,  # F.linear's parameter names, so keyword calls bind too
    weight: Any,
    bias: Any = None,
) -> tuple[Any, Any, Any]:
    """The arguments of an ``F.linear`` call, however they were passed."""
    return input, weight, bias


def _eligible(x: Any, weight: Any, bias: Any) -> bool:
    """A float32 matrix with rows, on the CPU, with no gradient to record."""
    tensors = (x, weight) if bias is None else (x, weight, bias)
    return (
        all(isinstance(t, torch.Tensor) for t in tensors)
        and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)
        and x.dim() == 2
        and x.shape[0] > 0
        and not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))
    )
