"""Training objectives, one module per ``model.kind``."""

from aeops.models.objectives import denoising, sparse, vae, vanilla

__all__ = ["denoising", "sparse", "vae", "vanilla"]
