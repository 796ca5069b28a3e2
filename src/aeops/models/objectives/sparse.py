"""The sparse autoencoder: reconstruction plus a sparsity penalty on the code."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from aeops.models._config import ModelConfig
from aeops.models._contract import Autoencoder, LossOutput
from aeops.models._losses import elementwise_reconstruction_loss
from aeops.models._registry import register_model


def l1_activity(code: Tensor) -> Tensor:
    """Mean absolute activation of the code, (B, L) -> scalar."""
    return code.abs().mean()


def kl_sparsity(activations: Tensor, target: float) -> Tensor:
    """KL(target || mean activation), summed over code units.

    ``activations`` are in (0, 1), shape (B, L); the mean over the batch is each unit's
    activation rate. The penalty is 0 exactly when every unit's rate equals ``target``.
    """
    # In float32: in bf16, 1 - 1e-6 rounds to 1, and a saturated unit's KL is infinite.
    rate = activations.float().mean(dim=0).clamp(1e-6, 1 - 1e-6)  # (L,)
    rho = torch.as_tensor(target, dtype=rate.dtype, device=rate.device)
    kl = rho * torch.log(rho / rate) + (1 - rho) * torch.log((1 - rho) / (1 - rate))
    return kl.sum()


@register_model("sparse")
class SparseAutoencoder(Autoencoder):
    """Minimises reconstruction + ``sparsity.weight`` * penalty.

    ``sparsity.kind: l1`` penalises the code's mean absolute activation. ``kl`` makes
    the code sigmoid units and penalises KL(target || each unit's mean activation),
    the classic sparse autoencoder; the embedding is then the sigmoid activations.
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, config: ModelConfig) -> None:
        super().__init__(encoder, decoder, config)
        self.sparsity = config.sparsity

    def encode(self, x: Tensor) -> Tensor:
        """The code: sigmoid activations for the KL penalty, the raw output for L1."""
        code = self.encoder(x)
        return code.sigmoid() if self.sparsity.kind == "kl" else code

    def loss(self, x: Tensor) -> LossOutput:
        """Reconstruction of ``x`` plus the weighted sparsity penalty of its code."""
        code = self.encode(x)
        logits = self.decode_logits(code)
        kind = self.config.reconstruction_loss
        if self._n_trimmed(x.shape[0]) == 0:  # one fused mean over every element
            reconstruction = elementwise_reconstruction_loss(logits, x, kind, reduction="mean")
        else:  # the penalty's rates are the code's on the kept samples too
            per_element = elementwise_reconstruction_loss(logits, x, kind)
            per_sample = per_element.flatten(start_dim=1).mean(dim=1)
            kept = self.kept_in_loss(per_sample)
            assert kept is not None, "_n_trimmed > 0 leaves samples out"
            reconstruction, code = per_sample[kept].mean(), code[kept]
        if self.sparsity.kind == "kl":
            penalty = kl_sparsity(code, self.sparsity.target)
            name = "sparsity_kl"
        else:
            penalty = l1_activity(code)
            name = "sparsity_l1"
        total = reconstruction + self.sparsity.weight * penalty
        return LossOutput(total=total, terms={"reconstruction": reconstruction, name: penalty})
