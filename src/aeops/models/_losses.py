"""Reconstruction losses, element by element, so callers reduce as they need."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def elementwise_reconstruction_loss(logits: Tensor, target: Tensor, kind: str) -> Tensor:
    """Loss of each element of the decoder output against ``target``.

    Args:
        logits: the decoder's raw output, same shape as ``target``.
        target: the clean input.
        kind: ``mse``, ``l1`` or ``bce`` (``logits`` are then pre-sigmoid; targets in [0, 1]).

    Returns:
        A tensor of ``target``'s shape.
    """
    if kind == "mse":
        return F.mse_loss(logits, target, reduction="none")
    if kind == "l1":
        return F.l1_loss(logits, target, reduction="none")
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    raise ValueError(f"model.reconstruction_loss={kind!r} is unknown; choose one of: bce, l1, mse")


def reconstruction_output(logits: Tensor, kind: str) -> Tensor:
    """Turn decoder output into a reconstruction in input space (sigmoid for ``bce``)."""
    return logits.sigmoid() if kind == "bce" else logits
