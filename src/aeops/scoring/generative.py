"""What a VAE adds beyond scoring: new samples from its prior, and missing values filled.

Both work in the original units of the training data, through the same input spec and
scaler as scoring, so generated rows have the training columns and imputed values are
on the scale of the observed ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from aeops.data import FittedScaler, ImageInputs, TabularInputs, WindowInputs
from aeops.models.objectives.vae import VariationalAutoencoder
from aeops.scoring._predictor import Predictor

#: the column that numbers generated samples (and, for series, ``step`` within one).
SAMPLE_COLUMN = "sample"
STEP_COLUMN = "step"


class GenerationError(ValueError):
    """The model cannot generate (it is not a VAE) or the request is invalid."""


def generate_samples(
    predictor: Predictor, n: int, seed: int = 0, temperature: float = 1.0
) -> np.ndarray:
    """``n`` samples decoded from the VAE's prior, in original units, (n, *sample_shape).

    Rows for tables (n, F), images (n, C, H, W) and windows (n, T, F). The prior's
    draws come from a CPU generator, so the same seed decodes the same codes on any
    device (the decoded values then match to the device's float precision).

    Raises:
        GenerationError: if the model is not a VAE, or ``n`` or ``temperature`` is not
            positive.
    """
    model = predictor.model
    if not isinstance(model, VariationalAutoencoder):
        raise GenerationError(
            f"generation samples a VAE's prior, but this model is model.kind="
            f"{model.config.kind!r}; train one with --params=model.kind=vae"
        )
    if n < 1:
        raise GenerationError(f"generate.num_samples must be at least 1, got {n}")
    if not temperature > 0:
        raise GenerationError(f"generate.temperature must be positive, got {temperature}")
    model.eval()
    generator = torch.Generator(device="cpu").manual_seed(seed)
    scaled = model.generate(n, generator=generator, temperature=temperature)
    flat = scaled.float().cpu().numpy().reshape(n, -1)
    shape = predictor.inputs.sample_shape
    if isinstance(predictor.inputs, WindowInputs):  # the scaler is per feature
        flat = flat.reshape(-1, shape[-1])
    return predictor.scaler.inverse_transform(flat).reshape(n, *shape)


def samples_frame(predictor: Predictor, samples: np.ndarray) -> pd.DataFrame:
    """Generated samples as a table shaped like the training data.

    Tables: one row per sample, ``sample`` then the feature columns. Images: ``sample``
    and the image column, one flattened C x H x W array per row. Series: one row per time step,
    ``sample``, ``step``, then the reading columns. Where a model's own column has one
    of those names, the added column gets leading underscores (``_sample``).
    """
    inputs = predictor.inputs
    n = samples.shape[0]
    numbers = np.arange(n)
    if isinstance(inputs, TabularInputs):
        frame = pd.DataFrame(samples, columns=list(inputs.columns))
        frame.insert(0, _free(SAMPLE_COLUMN, inputs.columns), numbers)
        return frame
    if isinstance(inputs, ImageInputs):  # flattened C x H x W, as Parquet stores arrays
        sample = _free(SAMPLE_COLUMN, [inputs.column])
        return pd.DataFrame({sample: numbers, inputs.column: list(samples.reshape(n, -1))})
    if isinstance(inputs, WindowInputs):
        length = inputs.length
        frame = pd.DataFrame(samples.reshape(n * length, -1), columns=list(inputs.columns))
        step = _free(STEP_COLUMN, inputs.columns)
        frame.insert(0, step, np.tile(np.arange(length), n))
        frame.insert(0, _free(SAMPLE_COLUMN, [*inputs.columns, step]), np.repeat(numbers, length))
        return frame
    raise GenerationError(f"no table form for generated {inputs.kind} samples")


def _free(name: str, taken: Sequence[str]) -> str:
    """``name``, with leading underscores until no column in ``taken`` has it."""
    while name in taken:
        name = f"_{name}"
    return name


@dataclass(frozen=True)
class Imputation:
    """Missing values filled by iterative conditional reconstruction.

    Attributes:
        values: every value in original units (N, values per row); observed values are
            the input's, bit for bit.
        missing: which values were missing (and are now filled), same shape.
        iterations: reconstruction passes run.
        last_change: the largest change of a filled value in the last pass, in units
            of the scaler (standard deviations for standard scaling).
    """

    values: np.ndarray
    missing: np.ndarray
    iterations: int
    last_change: float


def column_means(values: np.ndarray, scaler: FittedScaler) -> np.ndarray:
    """Each column's mean over its observed (non-NaN) values, (values per row,); the
    scaler's typical training value for a column with none: where imputation starts."""
    observed = (~np.isnan(values)).sum(axis=0)
    means = np.nansum(values, axis=0) / np.maximum(observed, 1)
    return np.where(observed > 0, means, np.broadcast_to(scaler.typical, means.shape))


def impute_values(
    predictor: Predictor, frame: pd.DataFrame, max_iterations: int = 50, tolerance: float = 1e-3
) -> Imputation:
    """Fill the NaN inputs of ``frame`` by iterative conditional reconstruction.

    Missing values start at their column's mean over the rows where it is observed (a
    typical training value when a column has none). Each pass reconstructs every
    sample with the model, whose decoder sees the observed values and the current
    guesses, and replaces only the missing values with their reconstruction. The passes stop when no
    filled value moves more than ``tolerance`` scaler units, or after ``max_iterations``.
    With a VAE the reconstruction is the decoded posterior mean, so the result is
    deterministic.

    Raises:
        InputSchemaError: naming missing columns, non-numeric or infinite values.
        ValueError: if ``max_iterations`` < 1.
    """
    if max_iterations < 1:
        raise ValueError(f"impute.max_iterations must be at least 1, got {max_iterations}")
    inputs, scaler = predictor.inputs, predictor.scaler
    observed = inputs.raw_values(frame, allow_missing=True)
    missing = np.isnan(observed)
    values = observed.copy()
    if not missing.any():
        return Imputation(values=values, missing=missing, iterations=0, last_change=0.0)
    scale = np.broadcast_to(scaler.scale, values.shape)
    values[missing] = np.broadcast_to(column_means(values, scaler), values.shape)[missing]

    change, iteration = np.inf, 0
    for iteration in range(1, max_iterations + 1):  # noqa: B007 (reported in the result)
        samples = inputs.values_to_samples(values.copy(), scaler)
        reconstructed = inputs.row_reconstructions(
            len(values), predictor.reconstruct_samples(samples), scaler
        )
        filled = reconstructed[missing]
        change = float(np.max(np.abs(filled - values[missing]) / scale[missing]))
        values[missing] = filled
        if change < tolerance:
            break
    return Imputation(values=values, missing=missing, iterations=iteration, last_change=change)


def imputed_frame(
    predictor: Predictor, frame: pd.DataFrame, imputation: Imputation
) -> pd.DataFrame:
    """``frame`` with its missing inputs filled; every other cell is untouched.

    Images are the exception: the image column is rewritten whole, each image a
    flattened (C x H x W) float array whose observed pixels keep their values.
    """
    inputs = predictor.inputs
    if isinstance(inputs, ImageInputs):
        filled = frame.copy()
        filled[inputs.column] = list(imputation.values)
        return filled
    if not isinstance(inputs, TabularInputs | WindowInputs):
        raise GenerationError(f"no table form for imputed {inputs.kind} inputs")
    filled = frame.copy()
    for index, column in enumerate(inputs.columns):
        gaps = imputation.missing[:, index]
        if gaps.any():
            target = filled[column].to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
            target[gaps] = imputation.values[gaps, index]
            filled[column] = target
    return filled
