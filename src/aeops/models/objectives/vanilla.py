"""The vanilla autoencoder: reconstruction loss and nothing else."""

from __future__ import annotations

from aeops.models._contract import Autoencoder
from aeops.models._registry import register_model


@register_model("vanilla")
class VanillaAutoencoder(Autoencoder):
    """Minimises the configured reconstruction loss; the code is the encoder's output."""
