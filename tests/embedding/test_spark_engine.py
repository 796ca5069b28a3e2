"""The Spark engine against a real local Spark session, compared with the local engine."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from aeops.embedding import SUCCESS_MARKER, EmbedJob, TableSource
from aeops.serving import load_registered_bundle

from .conftest import image_rows, tabular_rows

pyspark = pytest.importorskip("pyspark")


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("aeops-tests")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    yield session
    session.stop()


@pytest.mark.parametrize("output", ["embeddings", "scores"])
def test_spark_output_equals_the_local_engine(
    store: dict[str, Any], spark: Any, tmp_path: Path, output: str
) -> None:
    source = tmp_path / "in"
    source.mkdir()
    for part in range(2):
        tabular_rows(250, seed=part).to_parquet(source / f"part-{part}.parquet")
    bundle = load_registered_bundle(store["models"]["tabular"])
    local = EmbedJob(TableSource(source), bundle, output=output)
    local.run(tmp_path / "local")
    spark_job = EmbedJob(TableSource(source), bundle, output=output, engine="spark")
    report = spark_job.run(tmp_path / "spark")
    assert report.rows == 500
    assert (tmp_path / "spark" / SUCCESS_MARKER).exists()
    local_table = pq.read_table(tmp_path / "local")
    spark_table = pq.read_table(tmp_path / "spark")
    assert spark_table.schema.equals(local_table.schema, check_metadata=False)
    spark_metadata = pq.read_schema(next((tmp_path / "spark").glob("part-*.parquet"))).metadata
    local_metadata = pq.read_schema(tmp_path / "local" / "part-0.parquet").metadata
    # The local engine's parts also name the input part each came from; Spark's
    # partitions come from no one input file.
    source_keys = {
        b"aeops.source_part",
        b"aeops.source_folder",
        b"aeops.source_bytes",
        b"aeops.source_mtime_ns",
        b"aeops.invalid_rows",
    }
    assert local_metadata[b"aeops.source_part"] == b"part-0.parquet"
    assert spark_metadata == {k: v for k, v in local_metadata.items() if k not in source_keys}
    expected = local_table.to_pandas().sort_values("id").reset_index(drop=True)
    actual = spark_table.to_pandas().sort_values("id").reset_index(drop=True)
    pd.testing.assert_frame_equal(actual, expected, check_exact=False, rtol=1e-6)


def test_spark_embeds_images_like_the_local_engine(
    store: dict[str, Any], spark: Any, tmp_path: Path
) -> None:
    images = image_rows().drop(columns=["label"])
    images["image"] = [a.reshape(-1).astype(np.float64) for a in images["image"]]
    source = tmp_path / "images.parquet"
    images.to_parquet(source)
    bundle = load_registered_bundle(store["models"]["image"])
    EmbedJob(TableSource(source), bundle).run(tmp_path / "local.parquet")
    EmbedJob(TableSource(source), bundle, engine="spark").run(tmp_path / "spark")
    expected = pq.read_table(tmp_path / "local.parquet").to_pandas().sort_values("id")
    actual = pq.read_table(tmp_path / "spark").to_pandas().sort_values("id")
    assert len(actual) == len(images)
    np.testing.assert_array_equal(actual["id"], expected["id"])
    np.testing.assert_allclose(
        np.stack(actual["embedding"]), np.stack(expected["embedding"]), rtol=1e-6
    )


def test_spark_stops_at_rows_that_fail_the_suite_and_writes_nothing(
    store: dict[str, Any], spark: Any, tmp_path: Path
) -> None:
    rows = tabular_rows(300)
    rows.loc[[7, 8], "f2"] = np.nan
    rows.to_parquet(tmp_path / "in.parquet")
    bundle = load_registered_bundle(store["models"]["tabular"])
    job = EmbedJob(TableSource(tmp_path / "in.parquet"), bundle, engine="spark")
    with pytest.raises(Exception, match=r"(?s)failed the model's validation suite.*column 'f2'"):
        job.run(tmp_path / "spark")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.parquet"]
    quarantining = EmbedJob(
        TableSource(tmp_path / "in.parquet"), bundle, engine="spark", invalid_rows="quarantine"
    )
    with pytest.raises(ValueError, match="invalid_rows='quarantine' needs engine='local'"):
        quarantining.run(tmp_path / "spark")
