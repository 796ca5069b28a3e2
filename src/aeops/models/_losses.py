"""Reconstruction losses, element by element, so callers reduce as they need."""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor


def elementwise_reconstruction_loss(
    logits: Tensor, target: Tensor, kind: str, reduction: Literal["none", "mean"] = "none"
) -> Tensor:
    """Loss of each element of the decoder output against ``target``.

    Args:
        logits: the decoder's raw output, same shape as ``target``.
        target: the clean input.
        kind: ``mse``, ``l1`` or ``bce`` (``logits`` are then pre-sigmoid; targets in [0, 1]).
        reduction: ``none`` for every element, ``mean`` for their mean in one fused
            kernel (forward and backward).

    Returns:
        A tensor of ``target``'s shape, or a scalar for ``mean``.
    """
    if kind == "mse":
        return F.mse_loss(logits, target, reduction=reduction)
    if kind == "l1":
        return F.l1_loss(logits, target, reduction=reduction)
    if kind == "bce":
        # A target outside [0, 1] (a minmax-scaled row beyond the training range) has no
        # lower bound on its loss; it is compared as the nearest bound.
        bounded = target.clamp(0.0, 1.0)
        return F.binary_cross_entropy_with_logits(logits, bounded, reduction=reduction)
    raise ValueError(f"model.reconstruction_loss={kind!r} is unknown; choose one of: bce, l1, mse")


def reconstruction_output(logits: Tensor, kind: str) -> Tensor:
    """Turn decoder output into a reconstruction in input space (sigmoid for ``bce``)."""
    return logits.sigmoid() if kind == "bce" else logits


def _binary_entropy(p: Tensor) -> Tensor:
    p = p.clamp(1e-7, 1 - 1e-7)
    return -(p * p.log() + (1 - p) * (1 - p).log())


def elementwise_reconstruction_error(logits: Tensor, target: Tensor, kind: str) -> Tensor:
    """Per-element anomaly score: the loss in excess of a perfect reconstruction's.

    For ``mse`` and ``l1`` that is the loss itself. Binary cross-entropy never reaches
    0 on targets strictly between 0 and 1 (gray pixels): it is bounded below by the
    target's own entropy, so raw BCE would rank inputs by how gray they are. The score
    subtracts that entropy, leaving KL(Bernoulli(target) || Bernoulli(reconstruction)),
    which is 0 exactly when the reconstruction equals the target. A target outside
    [0, 1] (minmax scaling sees values beyond the training range) adds its squared
    distance to the range, so the further out, the higher the score.
    """
    loss = elementwise_reconstruction_loss(logits, target, kind)
    if kind == "bce":
        bounded = target.clamp(0.0, 1.0)
        excess = (target - bounded).square()
        return (loss - _binary_entropy(bounded)).clamp_min(0.0) + excess
    return loss
