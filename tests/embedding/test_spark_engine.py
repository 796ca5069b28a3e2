"""The Spark engine against a real local Spark session, compared with the local engine."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aeops.embedding import (
    SUCCESS_MARKER,
    BatchValidationError,
    EmbedJob,
    SourceError,
    TableSource,
    _engine,
    _spark,
)
from aeops.serving import load_registered_bundle

from .conftest import flat_image_rows, tabular_rows

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


@contextmanager
def small_splits(spark: Any, max_bytes: int) -> Iterator[None]:
    """Spark cuts input files into splits of about ``max_bytes`` within the block."""
    key = "spark.sql.files.maxPartitionBytes"
    before = spark.conf.get(key)
    spark.conf.set(key, str(max_bytes))
    try:
        yield
    finally:
        spark.conf.set(key, before)


@pytest.mark.parametrize("output", ["embeddings", "scores"])
def test_spark_output_equals_the_local_engine_row_for_row(
    store: dict[str, Any], spark: Any, tmp_path: Path, output: str
) -> None:
    # Parts of unequal sizes, the largest in row groups that Spark reads as separate
    # splits: Spark numbers its partitions largest split first, not in input order.
    source = tmp_path / "in"
    source.mkdir()
    # Names whose escaped URIs sort otherwise: "a%20b" comes after "a!b".
    for part, (name, rows) in enumerate([("a b", 120), ("a!b", 900), ("part-0", 350)]):
        frame = tabular_rows(rows, seed=part)
        frame["id"] += 10_000 * part
        frame.to_parquet(source / f"{name}.parquet", row_group_size=100)
    bundle = load_registered_bundle(store["models"]["tabular"])
    local = EmbedJob(TableSource(source), bundle, output=output)
    local_report = local.run(tmp_path / "local")
    spark_job = EmbedJob(TableSource(source), bundle, output=output, engine="spark")
    with small_splits(spark, 4096):
        report = spark_job.run(tmp_path / "spark")
    assert report.rows == 1370
    # The tasks' summaries of their parts add up to the local engine's of the whole.
    if output == "scores":
        assert report.errors is not None and local_report.errors is not None
        assert report.errors.rows == 1370
        assert report.errors.metrics() == local_report.errors.metrics()
        np.testing.assert_array_equal(report.errors.counts, local_report.errors.counts)
    else:
        assert report.errors is None and local_report.errors is None
    assert report.parts_written > 3  # the large part came in several splits
    assert (tmp_path / "spark" / SUCCESS_MARKER).exists()
    local_table = pq.read_table(tmp_path / "local")
    spark_table = pq.read_table(tmp_path / "spark")
    assert spark_table.schema.equals(local_table.schema, check_metadata=False)
    spark_metadata = pq.read_schema(next((tmp_path / "spark").glob("part-*.parquet"))).metadata
    local_metadata = pq.read_schema(tmp_path / "local" / "part-0.parquet").metadata
    # The local engine's parts also name the input part each came from.
    source_keys = {
        b"aeops.source_part",
        b"aeops.source_folder",
        b"aeops.source_bytes",
        b"aeops.source_mtime_ns",
        b"aeops.invalid_rows",
    }
    assert local_metadata[b"aeops.source_part"] == b"part-0.parquet"
    assert spark_metadata == {k: v for k, v in local_metadata.items() if k not in source_keys}
    # Read in name order, Spark's parts hold the rows in the input's order.
    pd.testing.assert_frame_equal(
        spark_table.to_pandas(), local_table.to_pandas(), check_exact=False, rtol=1e-6
    )


def test_spark_writes_an_empty_part_for_an_empty_input(
    store: dict[str, Any], spark: Any, tmp_path: Path
) -> None:
    tabular_rows(10).iloc[:0].to_parquet(tmp_path / "empty.parquet")
    bundle = load_registered_bundle(store["models"]["tabular"])
    report = EmbedJob(TableSource(tmp_path / "empty.parquet"), bundle, engine="spark").run(
        tmp_path / "spark"
    )
    assert report.rows == 0
    table = pq.read_table(tmp_path / "spark")
    assert table.num_rows == 0
    assert table.schema.names == ["id", "embedding"]
    assert (
        table.schema.metadata[b"aeops.model_version"]
        == str(bundle.provenance["model_version"]).encode()
    )


@pytest.mark.parametrize("rows", [0, 5])
def test_spark_refuses_an_input_without_the_models_columns_before_any_task(
    store: dict[str, Any], spark: Any, tmp_path: Path, rows: int
) -> None:
    # With no rows, no batch reached the suite, and an empty answer was written.
    tabular_rows(rows).drop(columns=["f1", "f3"]).to_parquet(tmp_path / "in.parquet")
    bundle = load_registered_bundle(store["models"]["tabular"])
    job = EmbedJob(TableSource(tmp_path / "in.parquet"), bundle, engine="spark")
    with pytest.raises(SourceError, match=r"in.parquet has no column 'f1' \(nor \['f3'\]\)"):
        job.run(tmp_path / "spark")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.parquet"]


def test_spark_embeds_images_like_the_local_engine(
    store: dict[str, Any], spark: Any, tmp_path: Path
) -> None:
    images = flat_image_rows()
    source = tmp_path / "images.parquet"
    images.to_parquet(source)
    bundle = load_registered_bundle(store["models"]["image"])
    EmbedJob(TableSource(source), bundle).run(tmp_path / "local.parquet")
    EmbedJob(TableSource(source), bundle, engine="spark").run(tmp_path / "spark")
    expected = pq.read_table(tmp_path / "local.parquet").to_pandas()
    actual = pq.read_table(tmp_path / "spark").to_pandas()
    assert len(actual) == len(images)
    np.testing.assert_array_equal(actual["id"], expected["id"])
    np.testing.assert_allclose(
        np.stack(actual["embedding"]), np.stack(expected["embedding"]), rtol=1e-6
    )


def test_spark_hands_the_model_batches_bounded_by_bytes(
    store: dict[str, Any], spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Spark's default of 10,000 rows a batch was 1 GB of float64 for 64 x 64 RGB images.
    images = flat_image_rows()
    images.to_parquet(tmp_path / "images.parquet")
    bundle = load_registered_bundle(store["models"]["image"])
    monkeypatch.setattr(_engine, "_BATCH_SAMPLE_BYTES", 10 * 4 * 8 * 8)  # ten 8 x 8 images
    key = "spark.sql.execution.arrow.maxRecordsPerBatch"
    before = spark.conf.get(key)
    job = EmbedJob(TableSource(tmp_path / "images.parquet"), bundle, engine="spark")
    job.run(tmp_path / "spark")
    assert spark.conf.get(key) == before
    parts = sorted((tmp_path / "spark").glob("part-*.parquet"))
    groups = [
        pq.ParquetFile(part).metadata.row_group(i).num_rows
        for part in parts
        for i in range(pq.ParquetFile(part).num_row_groups)
    ]
    assert max(groups) == 10 and sum(groups) == len(images)
    assert pq.read_table(tmp_path / "spark").to_pandas()["id"].tolist() == images["id"].tolist()


def test_spark_checks_images_against_the_suite_as_the_local_engine_does(
    store: dict[str, Any], spark: Any, tmp_path: Path
) -> None:
    images = flat_image_rows()
    images.at[3, "image"] = np.full_like(images.at[3, "image"], 999.0)  # pixels go to 16
    images.to_parquet(tmp_path / "images.parquet")
    bundle = load_registered_bundle(store["models"]["image"])
    messages = {}
    for engine in ("local", "spark"):
        job = EmbedJob(TableSource(tmp_path / "images.parquet"), bundle, engine=engine)
        # Spark's PythonException is raised again as the executor's own error.
        with pytest.raises(BatchValidationError) as raised:
            job.run(tmp_path / engine)
        messages[engine] = str(raised.value)
    assert re.fullmatch(
        r"(?s).*images\.parquet.* failed the model's validation suite:\n.*999.*", messages["spark"]
    )
    assert "Traceback" not in messages["spark"]
    assert messages["spark"].split("failed")[1] == messages["local"].split("failed")[1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images.parquet"]


def test_spark_writes_the_id_type_the_local_engine_writes(
    store: dict[str, Any], spark: Any, tmp_path: Path
) -> None:
    tabular_rows(50).to_csv(tmp_path / "in.csv", index=False)  # Spark infers int32 ids
    unsigned = tabular_rows(50).astype({"id": np.uint32})
    unsigned.to_parquet(tmp_path / "in.parquet")  # Spark reads uint32 as long
    bundle = load_registered_bundle(store["models"]["tabular"])
    for name in ("in.csv", "in.parquet"):
        for engine in ("local", "spark"):
            EmbedJob(TableSource(tmp_path / name), bundle, engine=engine).run(
                tmp_path / f"{name}.{engine}"
            )
        local = pq.read_table(tmp_path / f"{name}.local")
        spark_table = pq.read_table(tmp_path / f"{name}.spark")
        assert spark_table.schema.equals(local.schema, check_metadata=False), name
        assert spark_table.column("id").equals(local.column("id"))


def test_spark_reads_a_semicolon_separated_latin_1_csv_as_the_local_engine_does(
    store: dict[str, Any], spark: Any, tmp_path: Path
) -> None:
    rows = tabular_rows(80).assign(site="Zürich")
    rows.to_csv(tmp_path / "in.csv", index=False, sep=";", encoding="latin-1")
    source = TableSource(tmp_path / "in.csv", csv_delimiter=";", csv_encoding="latin-1")
    bundle = load_registered_bundle(store["models"]["tabular"])
    EmbedJob(source, bundle, output="scores").run(tmp_path / "local.parquet")
    EmbedJob(source, bundle, output="scores", engine="spark").run(tmp_path / "spark")
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "spark"), pd.read_parquet(tmp_path / "local.parquet")
    )


def test_spark_reads_date_like_and_text_ids_as_the_local_engine_does(
    store: dict[str, Any], spark: Any, tmp_path: Path
) -> None:
    padded = [f"{i:06d}" for i in range(80)]  # numbers, unless read as text
    days = pd.date_range("2024-01-01", periods=80, freq="D").strftime("%Y-%m-%d")
    bundle = load_registered_bundle(store["models"]["tabular"])
    for case, (ids, text) in enumerate([(padded, ()), (padded, ("id",)), (days, ())]):
        tabular_rows(80).assign(id=ids).to_csv(tmp_path / f"in{case}.csv", index=False)
        source = TableSource(tmp_path / f"in{case}.csv", csv_text_columns=text)
        EmbedJob(source, bundle).run(tmp_path / f"local{case}.parquet")
        EmbedJob(source, bundle, engine="spark").run(tmp_path / f"spark{case}")
        local = pq.read_table(tmp_path / f"local{case}.parquet")
        spark_table = pq.read_table(tmp_path / f"spark{case}")
        assert spark_table.schema.equals(local.schema, check_metadata=False), case
        assert spark_table.column("id").equals(local.column("id")), case
        expected = list(range(80)) if case == 0 else list(ids)
        assert local.column("id").to_pylist() == expected
    # pandas' missing cells (NA, null, ...) are missing ids in both, as an empty one is.
    missing = list(days)
    missing[3], missing[5], missing[6] = "", "NA", "null"
    tabular_rows(80).assign(id=missing).to_csv(tmp_path / "missing.csv", index=False)
    for engine in ("local", "spark"):
        job = EmbedJob(TableSource(tmp_path / "missing.csv"), bundle, engine=engine)
        with pytest.raises(BatchValidationError, match=r"not_be_null \(column 'id'\)"):
            job.run(tmp_path / f"missing.{engine}")
    # In a feature, NA is a missing number to both, not a reason for Spark to read text.
    features = tabular_rows(80).astype({"f0": object})
    features.loc[5, "f0"] = "NA"
    features.to_csv(tmp_path / "na.csv", index=False)
    messages = {}
    for engine in ("local", "spark"):
        job = EmbedJob(TableSource(tmp_path / "na.csv"), bundle, engine=engine)
        with pytest.raises(BatchValidationError) as raised:
            job.run(tmp_path / f"na.{engine}")
        messages[engine] = str(raised.value).split("failed")[1]
    assert messages["spark"] == messages["local"]
    assert "not_be_null (column 'f0')" in messages["spark"] and "type" not in messages["spark"]
    features.loc[5, "f0"] = "abc"
    features.to_csv(tmp_path / "abc.csv", index=False)
    job = EmbedJob(TableSource(tmp_path / "abc.csv"), bundle, engine="spark")
    with pytest.raises(SourceError, match=r"column 'f0' holds 'abc', which is not a number"):
        job.run(tmp_path / "abc.spark")


def test_decimal_features_are_read_as_numbers_by_both_engines(
    store: dict[str, Any], spark: Any, tmp_path: Path
) -> None:
    # Refused as "dtype object" by the local engine; Spark's pandas cells were Decimals.
    rows = tabular_rows(80).round(6)
    rows.to_parquet(tmp_path / "floats.parquet")
    table = pa.Table.from_pandas(rows, preserve_index=False)
    decimal = table.set_column(
        table.schema.get_field_index("f2"), "f2", table.column("f2").cast(pa.decimal128(12, 6))
    )
    pq.write_table(decimal, tmp_path / "decimal.parquet")
    bundle = load_registered_bundle(store["models"]["tabular"])
    expected = None
    for name, engine in (("floats", "local"), ("decimal", "local"), ("decimal", "spark")):
        source = TableSource(tmp_path / f"{name}.parquet")
        EmbedJob(source, bundle, output="scores", engine=engine).run(tmp_path / f"{name}.{engine}")
        scores = pd.read_parquet(tmp_path / f"{name}.{engine}")
        if expected is None:
            expected = scores
        pd.testing.assert_frame_equal(scores, expected, rtol=1e-6)


def test_spark_stops_at_rows_that_fail_the_suite_and_writes_nothing(
    store: dict[str, Any], spark: Any, tmp_path: Path
) -> None:
    rows = tabular_rows(300)
    rows.loc[[7, 8], "f2"] = np.nan
    rows.to_parquet(tmp_path / "in.parquet")
    bundle = load_registered_bundle(store["models"]["tabular"])
    job = EmbedJob(TableSource(tmp_path / "in.parquet"), bundle, engine="spark")
    log4j = spark.sparkContext._jvm.org.apache.logging.log4j
    loggers = [log4j.LogManager.getLogger(name) for name in _spark._TASK_FAILURE_LOGGERS]
    levels = [str(logger.getLevel()) for logger in loggers]
    assert "OFF" not in levels
    with pytest.raises(
        BatchValidationError, match=r"(?s)failed the model's validation suite.*column 'f2'"
    ):
        job.run(tmp_path / "spark")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.parquet"]
    # Spark's task-failure loggers were off during the job, and are back as they were:
    # following the session's level, not held at the one they had.
    assert [str(logger.getLevel()) for logger in loggers] == levels
    spark.sparkContext.setLogLevel("ERROR")
    try:
        assert [str(logger.getLevel()) for logger in loggers] == ["ERROR", "ERROR"]
    finally:
        spark.sparkContext.setLogLevel(levels[0])
    quarantining = EmbedJob(
        TableSource(tmp_path / "in.parquet"), bundle, engine="spark", invalid_rows="quarantine"
    )
    with pytest.raises(ValueError, match="invalid_rows='quarantine' needs engine='local'"):
        quarantining.run(tmp_path / "spark")
