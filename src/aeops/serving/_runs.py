"""What the active MLflow run records about its data: inputs and their digests."""

from __future__ import annotations

import warnings

import mlflow
import mlflow.data.pandas_dataset
import pandas as pd

from aeops.serving._registry import frame_digest


def log_dataset_input(
    frame: pd.DataFrame,
    name: str,
    context: str,
    label_column: str | None = None,
) -> str:
    """Record ``frame`` as an input of the active run (``mlflow.log_input``).

    The dataset carries the frame's source (``frame.attrs['source']``, the file it was
    read from), its schema and a content digest, so the MLflow UI shows which data
    every run saw and whether two runs saw the same data. Also tags the run with
    ``<context>_data_digest``.

    Returns:
        The digest (:func:`frame_digest`).

    Raises:
        RuntimeError: if no MLflow run is active.
    """
    if mlflow.active_run() is None:
        raise RuntimeError("log_dataset_input needs an active MLflow run")
    digest = frame_digest(frame)
    targets = label_column if label_column in frame.columns else None
    with warnings.catch_warnings():  # MLflow warns while guessing the kind of source
        warnings.simplefilter("ignore")
        dataset = mlflow.data.pandas_dataset.from_pandas(
            frame,
            source=str(frame.attrs.get("source", name)),
            name=name,
            targets=targets,
            digest=digest,
        )
        mlflow.log_input(dataset, context=context)
    mlflow.set_tag(f"{context}_data_digest", digest)
    return digest


def tag_evaluated_model(provenance: dict[str, str]) -> None:
    """Tag the active run with the model it evaluates (URI, name, version, run)."""
    if mlflow.active_run() is None:
        raise RuntimeError("tag_evaluated_model needs an active MLflow run")
    mlflow.set_tags({f"evaluated_{key}": value for key, value in provenance.items()})
