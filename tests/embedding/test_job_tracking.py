"""What a batch job saved through its catalog dataset records in the active MLflow run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest
from kedro.io import DataCatalog
from kedro.pipeline import Pipeline
from mlflow.tracking import MlflowClient

from aeops.embedding import EmbedJob, TableSource
from aeops.hooks import DescribeRun
from aeops.io import BatchJobOutputDataset, DataFileError
from aeops.pipelines._batch_nodes import plan_batch_job
from aeops.serving import load_registered_bundle

from .conftest import tabular_rows


def _job(store: dict[str, Any], source: Path, output: str) -> EmbedJob:
    bundle = load_registered_bundle(store["models"]["tabular"])
    return EmbedJob(TableSource(source), bundle, output=output)  # type: ignore[arg-type]


def test_a_second_job_in_one_run_gets_a_nested_run_of_its_own(
    store: dict[str, Any], tmp_path: Path
) -> None:
    tabular_rows(500).to_parquet(tmp_path / "in.parquet")
    with mlflow.start_run(run_name="score+embed") as parent:
        BatchJobOutputDataset(filepath=str(tmp_path / "s.parquet")).save(
            _job(store, tmp_path / "in.parquet", "scores")
        )
        BatchJobOutputDataset(filepath=str(tmp_path / "e.parquet")).save(
            _job(store, tmp_path / "in.parquet", "embeddings")
        )
    client = MlflowClient()
    first = client.get_run(parent.info.run_id)
    assert first.info.run_name == "score+embed"  # a name kedro-mlflow did not give
    assert first.data.tags["output_path"] == str(tmp_path / "s.parquet")
    assert first.data.metrics["rows"] == 500 and "alert_rate" in first.data.metrics
    (nested,) = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
    )
    assert nested.info.run_name == "embed-embed-tabular-v1"
    assert nested.data.tags["output_path"] == str(tmp_path / "e.parquet")
    assert nested.data.metrics["rows"] == 500 and "alert_rate" not in nested.data.metrics


def test_a_tracking_store_that_fails_after_the_output_is_written_is_warned_of(
    store: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tabular_rows(200).to_parquet(tmp_path / "in.parquet")
    target = tmp_path / "s.parquet"
    with mlflow.start_run() as run:
        MlflowClient().delete_run(run.info.run_id)  # logging to it now fails
        with caplog.at_level("WARNING", logger="aeops.io"):
            BatchJobOutputDataset(filepath=str(target)).save(
                _job(store, tmp_path / "in.parquet", "scores")
            )
        MlflowClient().restore_run(run.info.run_id)  # so that it can end
    assert len(BatchJobOutputDataset(filepath=str(target)).load()) == 200
    (warning,) = [r for r in caplog.records if "recording the job in MLflow" in r.getMessage()]
    assert warning.getMessage().startswith(f"{target} is complete, but recording the job")


def test_a_failed_job_names_its_run_after_the_model_it_loaded(
    store: dict[str, Any], tmp_path: Path
) -> None:
    rows = tabular_rows(300)
    rows.loc[7, "f2"] = np.nan
    rows.to_parquet(tmp_path / "in.parquet")
    hook = DescribeRun()
    with mlflow.start_run(run_name="score") as run:
        hook.before_pipeline_run({"pipeline_names": ["score"]}, Pipeline([]), DataCatalog())
        job = plan_batch_job(
            TableSource(tmp_path / "in.parquet"),
            {"model_uri": store["models"]["tabular"]},
            {},
            "scores",
            "score",
        )
        with pytest.raises(DataFileError, match="column 'f2'") as failure:
            BatchJobOutputDataset(filepath=str(tmp_path / "s.parquet")).save(job)
        hook.on_pipeline_error(failure.value, {}, pipeline=None, catalog=None)
    assert MlflowClient().get_run(run.info.run_id).info.run_name == "score-embed-tabular-v1"
