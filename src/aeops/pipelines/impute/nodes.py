"""Nodes of the ``impute`` pipeline."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from aeops.data import DataConfig, TabularInputs, WindowInputs, ingest
from aeops.pipelines._params import parse_params
from aeops.pipelines._registered import load_model_for
from aeops.scoring import Predictor
from aeops.scoring.generative import Imputation, column_means, impute_values, imputed_frame
from aeops.serving import LoadedBundle
from aeops.validation import (
    suite_for_imputation,
    suite_from_dict,
    validate_frame,
    validation_view,
)

logger = logging.getLogger(__name__)

# Mixed into the seed, so held-out values never follow the draws of a plain
# default_rng(seed) that may have made the gaps.
_HOLDOUT_STREAM = 0x1A7E


class ImputeConfig(BaseModel):
    """The ``impute`` block."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_uri: str | None = None  # None: models:/<registry.model_name>@champion
    max_iterations: int = Field(default=50, ge=1)
    tolerance: float = Field(default=1e-3, gt=0.0)
    holdout_fraction: float = Field(default=0.1, ge=0.0, lt=1.0)
    seed: int = Field(default=0, ge=0, lt=2**32)  # numpy, torch and Optuna take these


def load_imputer(impute: dict[str, Any], registry: dict[str, Any]) -> LoadedBundle:
    """Load the model named by ``impute.model_uri`` and tag the run ``imputed_by_*``.

    Raises:
        ModelNotFoundError: if the URI names no loadable aeops bundle.
    """
    config = parse_params(ImputeConfig, impute, "impute")
    bundle = load_model_for(config.model_uri, registry, role="imputed_by")
    if bundle.predictor.model.config.kind != "vae":
        logger.warning(
            "Imputing with a %r autoencoder; a VAE (model.kind=vae) usually imputes better",
            bundle.predictor.model.config.kind,
        )
    return bundle


def _warn_of_what_nothing_was_observed_for(
    missing: np.ndarray, frame: pd.DataFrame, predictor: Predictor, id_column: str
) -> None:
    """Warn of rows (and table columns) with no observed value: each such row of a
    table or image is filled with the same values, the model's answer to an empty row,
    which is rarely what a user meant to impute; a series' step is filled from its
    neighbouring steps alone."""
    if missing.size == 0:
        return
    empty_rows = missing.all(axis=1)
    if empty_rows.any():
        ids = frame[id_column].to_numpy()[empty_rows][:5].tolist()
        logger.warning(
            "%d row(s) have no observed feature value (ids %s%s): %s",
            int(empty_rows.sum()),
            ids,
            ", ..." if empty_rows.sum() > 5 else "",
            "each is filled from its neighbouring steps alone"
            if isinstance(predictor.inputs, WindowInputs)
            else "each is filled with the same values",
        )
    if isinstance(predictor.inputs, TabularInputs):
        columns = predictor.inputs.columns
        never_seen = np.asarray(missing.all(axis=0)).tolist()
        empty = [name for name, gone in zip(columns, never_seen, strict=True) if gone]
        if empty:
            logger.warning(
                "Column(s) %s have no observed value: they are filled from the other columns alone",
                empty,
            )


def holdout_rmse(
    predictor: Predictor, frame: pd.DataFrame, config: ImputeConfig
) -> dict[str, float]:
    """How well the model imputes this data: hide a share of the observed values,
    impute them, and compare with the truth and with column-mean imputation.

    Errors are root mean squares in scaler units (standard deviations for standard
    scaling), so features of any scale weigh alike. Empty when nothing can be held out.
    """
    observed = predictor.inputs.raw_values(frame, allow_missing=True)
    known = ~np.isnan(observed)
    rng = np.random.default_rng([config.seed, _HOLDOUT_STREAM])
    hidden = known & (rng.random(observed.shape) < config.holdout_fraction)
    if not hidden.any():
        return {}
    masked = observed.copy()
    masked[hidden] = np.nan
    # The frame with the held-out values blanked (written like filled values are).
    trial = imputed_frame(predictor, frame, Imputation(masked, hidden, 0, 0.0))
    imputation = impute_values(predictor, trial, config.max_iterations, config.tolerance)
    scale = np.broadcast_to(predictor.scaler.scale, observed.shape)[hidden]
    baseline = np.broadcast_to(column_means(masked, predictor.scaler), observed.shape)
    truth = observed[hidden]

    def rmse(guess: np.ndarray) -> float:
        return float(np.sqrt(np.mean(((guess - truth) / scale) ** 2)))

    return {
        "impute_holdout_values": float(hidden.sum()),
        "impute_holdout_rmse": rmse(imputation.values[hidden]),
        "impute_holdout_rmse_column_mean": rmse(baseline[hidden]),
    }


def impute_missing_values(
    bundle: LoadedBundle, impute_input: pd.DataFrame, impute: dict[str, Any]
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Fill the missing feature values of ``impute_input``; other cells are untouched.

    The data is first checked with the model's own Great Expectations suite, less its
    not-null checks of the features (see
    :func:`~aeops.validation.suite_for_imputation`). With ``holdout_fraction`` > 0 the
    run also measures how well the model imputes this data (:func:`holdout_rmse`).

    Raises:
        DataValidationError: naming every failed expectation.
        InputSchemaError: if the data lacks the model's inputs or holds inf.
    """
    config = parse_params(ImputeConfig, impute, "impute")
    data = DataConfig(**bundle.spec.data) if bundle.spec.data else DataConfig()
    frame = ingest(impute_input, data)
    source = impute_input.attrs.get("source", "impute_input")
    if bundle.spec.validation_suite:
        view = validation_view(frame, data, missing_values=True)
        suite = suite_from_dict(suite_for_imputation(bundle.spec.validation_suite))
        validate_frame(
            view.frame, suite, source=source, id_column=data.id_column
        ).raise_for_failures()
    predictor = bundle.predictor
    imputation = impute_values(predictor, frame, config.max_iterations, config.tolerance)
    metrics = {
        "impute_missing_values": float(imputation.missing.sum()),
        "impute_rows_with_missing": float(imputation.missing.any(axis=1).sum()),
        "impute_iterations": float(imputation.iterations),
        "impute_last_change": imputation.last_change,
    }
    _warn_of_what_nothing_was_observed_for(imputation.missing, frame, predictor, data.id_column)
    if config.holdout_fraction > 0:
        metrics.update(holdout_rmse(predictor, frame, config))
        if "impute_holdout_rmse" not in metrics:
            observed = int((~imputation.missing).sum())
            logger.warning(
                "Held-out check skipped: %s",
                f"holdout_fraction={config.holdout_fraction} drew none of the {observed} "
                "observed values; raise it"
                if observed
                else "no observed value to hold out",
            )
    if imputation.last_change >= config.tolerance:
        logger.warning(
            "Imputation stopped at impute.max_iterations=%d before it settled: the last "
            "pass still moved a filled value by %.3g scaler units (impute.tolerance=%g); "
            "raise max_iterations",
            config.max_iterations,
            imputation.last_change,
            config.tolerance,
        )
    logger.info(
        "Filled %d missing value(s) in %d row(s) of %s in %d pass(es)",
        int(metrics["impute_missing_values"]),
        int(metrics["impute_rows_with_missing"]),
        source,
        imputation.iterations,
    )
    if "impute_holdout_rmse" in metrics:
        logger.info(
            "Held-out check: RMSE %.4f (column means: %.4f), in scaler units",
            metrics["impute_holdout_rmse"],
            metrics["impute_holdout_rmse_column_mean"],
        )
    filled = imputed_frame(predictor, frame, imputation)
    # Ingestion puts the id column first; the output keeps the input's column order.
    kept = [column for column in impute_input.columns if column in filled.columns]
    return filled[[c for c in filled.columns if c not in kept] + kept], metrics
