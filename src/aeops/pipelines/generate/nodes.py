"""Nodes of the ``generate`` pipeline."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from pydantic import BaseModel, ConfigDict, Field

from aeops.data import ImageInputs, TabularInputs, WindowInputs
from aeops.pipelines._params import parse_params
from aeops.pipelines._registered import load_model_for
from aeops.scoring import plots
from aeops.scoring.generative import GenerationError, generate_samples, samples_frame
from aeops.serving import LoadedBundle

logger = logging.getLogger(__name__)


class GenerateConfig(BaseModel):
    """The ``generate`` block."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_uri: str | None = None  # None: models:/<registry.model_name>@champion
    num_samples: int = Field(default=64, ge=1)
    seed: int = Field(default=0, ge=0, lt=2**32)  # numpy, torch and Optuna take these
    temperature: float = Field(default=1.0, gt=0.0, allow_inf_nan=False)


def load_generator(generate: dict[str, Any], registry: dict[str, Any]) -> LoadedBundle:
    """Load the VAE named by ``generate.model_uri`` and tag the run ``generated_by_*``.

    Raises:
        ModelNotFoundError: if the URI names no loadable aeops bundle.
    """
    config = parse_params(GenerateConfig, generate, "generate")
    return load_model_for(config.model_uri, registry, role="generated_by")


def generate_synthetic_data(
    bundle: LoadedBundle, generate: dict[str, Any]
) -> tuple[pd.DataFrame, dict[str, Figure], dict[str, float]]:
    """Sample ``num_samples`` from the VAE's prior, in the training data's units.

    Returns:
        The samples as a table shaped like the training data (see
        :func:`~aeops.scoring.generative.samples_frame`), a figure of them (an image
        grid, the generated windows, or each feature's distribution), and metrics.

    Raises:
        GenerationError: if the model is not a VAE.
    """
    config = parse_params(GenerateConfig, generate, "generate")
    predictor = bundle.predictor
    try:
        samples = generate_samples(predictor, config.num_samples, config.seed, config.temperature)
    except GenerationError as error:
        raise GenerationError(
            f"{error}. generate.model_uri names {_named(bundle)}; point it at a VAE's "
            "version: --params=generate.model_uri=models:/<name>/<version>"
        ) from error
    inputs = predictor.inputs
    clipped = _clip_to_bounds(samples, inputs, bundle.spec.data)
    if isinstance(inputs, ImageInputs):
        figure = plots.sample_grid(samples)
    elif isinstance(inputs, WindowInputs):
        figure = plots.generated_windows(samples, list(inputs.columns))
    elif isinstance(inputs, TabularInputs):
        figure = plots.feature_distributions(samples, list(inputs.columns))
    else:
        raise GenerationError(f"no figure for generated {inputs.kind} samples")
    logger.info("Generated %d %s samples", config.num_samples, inputs.kind)
    metrics = {"generated_samples": float(config.num_samples), "generated_clipped": clipped}
    return samples_frame(predictor, samples), {"generated_samples.png": figure}, metrics


def _clip_to_bounds(samples: np.ndarray, inputs: object, data: dict[str, Any]) -> float:
    """Clip each generated feature into its ``data.bounds``, and pixels into
    ``data.pixel_range`` (values the data cannot take, drawn from the tails of the
    prior, or decoded by a model with an unbounded output); returns how many moved."""
    ranges: list[tuple[np.ndarray, Any, Any]] = []
    if isinstance(inputs, ImageInputs) and data.get("pixel_range") is not None:
        ranges.append((samples, *data["pixel_range"]))
    elif isinstance(inputs, TabularInputs | WindowInputs):
        bounds = data.get("bounds") or {}
        for index, column in enumerate(inputs.columns):
            if column in bounds:
                ranges.append((samples[..., index], *bounds[column]))
    moved = 0
    for values, low, high in ranges:
        low = -np.inf if low is None else float(low)
        high = np.inf if high is None else float(high)
        outside = (values < low) | (values > high)
        if outside.any():
            moved += int(outside.sum())
            np.clip(values, low, high, out=values)
    if moved:
        logger.warning(
            "%d generated value(s) fell outside data.bounds or data.pixel_range and were "
            "clipped to them",
            moved,
        )
    return float(moved)


def _named(bundle: LoadedBundle) -> str:
    provenance = bundle.provenance
    version = f" (version {provenance['model_version']})" if "model_version" in provenance else ""
    return f"{provenance.get('model_uri', 'a model')}{version}"
