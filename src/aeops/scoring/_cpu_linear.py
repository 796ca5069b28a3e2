"""Linear layers for inference on the CPU, on oneDNN where torch has it.

On the CPU, torch's ``F.linear`` goes to the BLAS torch was built with (MKL in the x86
wheels). For the narrow layers of these networks, oneDNN's inner product, which torch
also ships, is much faster where it runs: on a 2-core AMD EPYC with torch 2.13 the
benchmark's 64 -> 64 -> 32 -> 16 encoder ran 2.3x as fast (5.1 ms per 65,536 rows,
against 12.2 ms). Within :class:`OneDnnLinear`, ``F.linear`` calls on float32
matrices go there; the predictor enters it when :func:`onednn_linear_available`.

The two kernels' answers differ within float32 rounding, and each computes the
smallest batches another way, with other bits (oneDNN a single row, MKL some batches
of a few rows). So the predictor uses one kernel for all of its CPU work in a
process, and pads every batch it runs (see ``Predictor._answer_all``).

:func:`direct_twin` goes one step further for plain stacks of linear layers and
activations, such as the MLP encoders and decoders: it calls oneDNN for each layer
directly, and a following ReLU in place on its output, rather than through the
modules and the mode. Same answers, bit for bit.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
from collections.abc import Callable
from typing import Any, TypeGuard

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

logger = logging.getLogger(__name__)


def _onednn_linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """oneDNN's inner product, with no activation fused (torch's own activations follow:
    the kernel's ReLU turns NaN into 0)."""
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
            got, expected = _onednn_linear(x, weight, bias), F.linear(x, weight, bias)
            return bool(torch.allclose(got, expected, rtol=1e-4, atol=1e-5))
    except Exception as error:  # any failure only means: not here
        logger.debug("oneDNN linear is not usable here: %s", error)
        return False


class OneDnnLinear(TorchFunctionMode):
    """Within it, ``F.linear`` on float32 CPU matrices runs on oneDNN.

    Use it only where :func:`onednn_linear_available` says so. Anything else (other
    dtypes or devices, batched inputs, gradients to record, which oneDNN's linear has
    no backward for) is left to ``F.linear`` as called. Modes are per thread, so other
    threads are not affected.
    """

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
            if _eligible(x, weight, bias):  # its kernels read every operand as packed rows
                contiguous_bias = None if bias is None else bias.contiguous()
                return _onednn_linear(x.contiguous(), weight.contiguous(), contiguous_bias)
        return func(*args, **kwargs)


def _linear_arguments(
    input: Any,  # F.linear's parameter names, so keyword calls bind too
    weight: Any,
    bias: Any = None,
) -> tuple[Any, Any, Any]:
    """The arguments of an ``F.linear`` call, however they were passed."""
    return input, weight, bias


def _eligible(x: Any, weight: Any, bias: Any) -> bool:
    """A float32 matrix with rows and columns, a matching weight matrix and bias, on
    the CPU, with no gradient to record; anything else stays with ``F.linear``."""
    tensors = (x, weight) if bias is None else (x, weight, bias)
    return (
        all(isinstance(t, torch.Tensor) for t in tensors)
        and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)
        and x.dim() == 2
        and weight.dim() == 2
        and x.shape[0] > 0
        and x.shape[1] > 0
        and x.shape[1] == weight.shape[1]
        and (bias is None or tuple(bias.shape) == (weight.shape[0],))
        and not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))
    )


# Turns torch-function modes off (private, in every torch this project supports).
_torch_function_off: Callable[[], Any] = getattr(
    torch._C, "DisableTorchFunction", contextlib.nullcontext
)


class _DirectStack(nn.Module):
    """Runs an ``nn.Sequential`` of linear layers, activations and dropout in inference
    as direct oneDNN calls, a ReLU after a linear layer in place on its output.

    Anything else runs the stack as it is: training (of the stack or any layer in it),
    gradients to record, or an input or layer the kernel does not take (see
    :func:`_eligible`). Dropout is the identity in eval mode, so it is skipped; other
    activations run as their modules. The ReLU is torch's own, not the kernel's fused
    one, which turns NaN into 0 where torch keeps it.
    """

    def __init__(self, stack: nn.Sequential) -> None:
        super().__init__()
        self.stack = stack
        self._steps = [layer for layer in stack if not isinstance(layer, nn.Dropout)]

    @staticmethod
    def fits(module: nn.Module) -> TypeGuard[nn.Sequential]:
        """Whether ``module`` is a stack of linear layers, activations and dropout, with
        no hooks on it or its layers (running it past the modules would skip them)."""
        plain = (nn.Linear, nn.ReLU, nn.Dropout, nn.GELU, nn.SiLU, nn.Tanh)
        return (
            type(module) is nn.Sequential
            and any(type(layer) is nn.Linear for layer in module)
            and all(type(layer) in plain for layer in module)
            and not any(m._forward_hooks or m._forward_pre_hooks for m in module.modules())
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_inference_mode_enabled() or any(m.training for m in self.stack.modules()):
            return self.stack(x)
        # Past the mode: it would add a Python call to every tensor operation here, and
        # sends the linear layers it sees to the same kernel as these calls.
        with _torch_function_off():
            fresh = False  # whether x is a kernel's output, which nothing else holds
            for layer in self._steps:
                if isinstance(layer, nn.ReLU) and fresh:
                    x = torch.relu_(x)  # no new tensor: its pages would fault in afresh
                elif isinstance(layer, nn.Linear) and _eligible(x, layer.weight, layer.bias):
                    bias = None if layer.bias is None else layer.bias.contiguous()
                    x = _onednn_linear(x.contiguous(), layer.weight.contiguous(), bias)
                else:  # an activation, or a linear layer the mode leaves to F.linear
                    x = layer(x)
                fresh = isinstance(layer, nn.Linear)
        return x


def direct_twin(model: nn.Module) -> nn.Module:
    """``model`` for CPU inference on oneDNN: a shallow copy whose direct children that
    are plain stacks (see :class:`_DirectStack`) run as direct calls. It shares every
    parameter and submodule with ``model``, which is left as it was; ``model`` itself
    when no child is such a stack. Use it within :class:`OneDnnLinear`."""
    direct = {
        name: _DirectStack(child)
        for name, child in model.named_children()
        if _DirectStack.fits(child)
    }
    if not direct:
        return model
    twin = copy.copy(model)
    twin._modules = {**model._modules, **direct}
    return twin
