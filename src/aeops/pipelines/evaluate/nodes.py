"""Nodes of the ``evaluate`` pipeline."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from pydantic import BaseModel, ConfigDict

from aeops.data import DataConfig, InputSchemaError, TabularInputs, ingest
from aeops.pipelines._params import parse_params
from aeops.pipelines._registered import load_model_for
from aeops.scoring.evaluation import evaluate_frame
from aeops.serving import LoadedBundle, log_dataset_input
from aeops.validation import (
    suite_for_evaluation,
    suite_from_dict,
    validate_frame,
    validation_view,
)

logger = logging.getLogger(__name__)


class EvaluateConfig(BaseModel):
    """The ``evaluate`` block."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_uri: str | None = None  # None: models:/<registry.model_name>@champion
    metric_prefix: str = "eval"


def load_model_to_evaluate(evaluate: dict[str, Any], registry: dict[str, Any]) -> LoadedBundle:
    """Load the registered bundle named by ``evaluate.model_uri`` and tag the run with it.

    Raises:
        ModelNotFoundError: if the URI names no loadable aeops bundle.
    """
    config = parse_params(EvaluateConfig, evaluate, "evaluate")
    return load_model_for(config.model_uri, registry, role="evaluated")


def evaluate_registered_model(
    bundle: LoadedBundle, evaluate_input: pd.DataFrame, evaluate: dict[str, Any]
) -> tuple[dict[str, float], pd.DataFrame, pd.DataFrame, dict[str, Figure]]:
    """Validate the dataset with the model's own suite, score it and measure it.

    The data block (id, label, kinds) and the Great Expectations suite come from the
    bundle, so the model is judged on data it accepts, exactly as ``score`` would see it.
    Data without the label column, or fewer rows than training needed, is evaluated
    too (see :func:`~aeops.validation.suite_for_evaluation`): without labels, on its
    scores and alert rate alone.

    Raises:
        DataValidationError: naming every failed expectation of the model's suite.
        InputSchemaError: if the data lacks the model's inputs.
    """
    config = parse_params(EvaluateConfig, evaluate, "evaluate")
    data = DataConfig(**bundle.spec.data) if bundle.spec.data else DataConfig()
    frame = ingest(evaluate_input, data)
    frame.attrs["source"] = evaluate_input.attrs.get("source", "evaluate_input")
    if not isinstance(bundle.predictor.inputs, TabularInputs):
        # An image's or a series' suite names the columns derived from the input.
        problem = bundle.missing_columns_problem(frame.attrs["source"], list(frame.columns))
        if problem is not None:
            raise InputSchemaError(problem)
    if bundle.spec.validation_suite:
        view = validation_view(frame, data)
        labelled = data.label_column is not None and data.label_column in frame.columns
        suite = suite_from_dict(suite_for_evaluation(bundle.spec.validation_suite, labelled))
        validate_frame(
            view.frame, suite, source=frame.attrs["source"], id_column=data.id_column
        ).raise_for_failures()
    log_dataset_input(
        frame, name="evaluate_input", context="evaluation", label_column=data.label_column
    )
    evaluation = evaluate_frame(
        bundle.predictor,
        frame,
        id_column=data.id_column,
        label_column=data.label_column,
        prefix=config.metric_prefix,
        timestamp_column=data.timestamp_column,
    )
    for name, value in evaluation.metrics.items():
        if name.endswith(("_auroc", "_auprc", "_f1")):
            logger.info("%s = %.4f", name, value)
    return evaluation.metrics, evaluation.scores, evaluation.feature_errors, evaluation.figures
