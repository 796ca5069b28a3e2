"""Nodes shared by the ``embed`` and ``score`` pipelines."""

from __future__ import annotations

import logging
from typing import Any

import mlflow

from aeops.bundle import LoadedBundle
from aeops.embedding import BatchJobConfig, BatchJobError, EmbedJob, TableSource
from aeops.embedding._engine import Output
from aeops.pipelines._params import parse_params
from aeops.serving import RegistryConfig, default_model_uri, load_registered_bundle

logger = logging.getLogger(__name__)


def plan_batch_job(
    source: TableSource,
    job: dict[str, Any],
    registry: dict[str, Any],
    output: Output,
    area: str,
) -> EmbedJob:
    """Load the model and plan the job; the output dataset runs it when saving.

    Raises:
        ModelNotFoundError: if ``model_uri`` names no loadable aeops bundle.
        BatchJobError: if the input is not a :class:`TableSource` (its catalog entry is not
            an ``aeops.io.TableSourceDataset``).
    """
    if not isinstance(source, TableSource):
        raise BatchJobError(
            f"{area}_input must be streamed from files: give its catalog entry type "
            f"aeops.io.TableSourceDataset (a CSV or Parquet file, or a folder of them), "
            f"not one that loads a {type(source).__name__}. For a folder of image files, "
            "write them to Parquet first (README: Batch embedding and scoring)"
        )
    config = parse_params(BatchJobConfig, job, area)
    model_uri = config.model_uri or default_model_uri(
        parse_params(RegistryConfig, registry, "registry").model_name
    )
    bundle = load_registered_bundle(model_uri)
    _tag_the_run_with_its_model(bundle)
    return EmbedJob(
        source=source,
        bundle=bundle,
        output=output,
        batch_rows=config.batch_rows,
        invalid_rows=config.invalid_rows,
        engine=config.engine,
    )


def _tag_the_run_with_its_model(bundle: LoadedBundle) -> None:
    """Tag the pipeline's MLflow run with the model's name and version once it loads,
    so that a run whose job then fails is named after it too (see
    ``aeops.hooks.DescribeRun``). A second job in the run (``--pipelines=score,embed``)
    leaves the first's tags; it records its own in a nested run."""
    run = mlflow.active_run()
    if run is None:
        return
    provenance = bundle.provenance
    try:
        if "model_name" in mlflow.MlflowClient().get_run(run.info.run_id).data.tags:
            return
        mlflow.set_tags(
            {k: str(provenance[k]) for k in ("model_name", "model_version") if k in provenance}
        )
    except Exception as error:  # only the run's name depends on it: the job goes on
        logger.warning("Could not tag run %s with its model: %s", run.info.run_id, error)
