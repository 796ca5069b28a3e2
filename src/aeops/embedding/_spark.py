"""The Spark engine: the bundle as ``mlflow.pyfunc.spark_udf`` over a Spark DataFrame.

Spark reads the input, the registered model scores every partition through
``spark_udf`` (the same pyfunc and the same numbers as the local engine), and each
partition is written by its executor with pyarrow, so the output has exactly the
local engine's schema (a fixed-size-list embedding) and provenance metadata, which
Spark's own Parquet writer cannot express. Parts go to a temporary folder that is
renamed into place when every partition is done.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from aeops.data import TabularInputs
from aeops.embedding._checks import BatchValidationError, CompiledSuite
from aeops.embedding._engine import PARQUET_WRITE_OPTIONS, SUCCESS_MARKER, EmbedJob, JobReport

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

logger = logging.getLogger(__name__)


def _read(spark: SparkSession, path: Path) -> DataFrame:
    files = [path] if path.is_file() else sorted(path.iterdir())
    if any(p.suffix.lower() == ".csv" for p in files):
        return spark.read.csv(str(path), header=True, inferSchema=True)
    return spark.read.parquet(str(path))


def _result_type(job: EmbedJob, id_type: str) -> str:
    id_column = job.bundle.spec.id_column
    if job.output == "embeddings":
        return f"`{id_column}` {id_type}, embedding array<float>"
    return f"`{id_column}` {id_type}, reconstruction_error double, is_anomaly boolean"


def run_spark(
    job: EmbedJob, model_uri: str, destination: Path, spark: SparkSession | None = None
) -> JobReport:
    """Score ``job.source`` with Spark into the folder ``destination``.

    Args:
        job: the plan; its bundle supplies the schema and provenance.
        model_uri: the URI ``spark_udf`` loads on the executors.
        destination: an output folder of ``part-*.parquet`` files and ``_SUCCESS``.
        spark: a session; by default the active one (``spark-submit`` on a cluster), or
            a new one on ``$AEOPS_SPARK_MASTER`` (default ``local[*]``).
    """
    import mlflow.pyfunc
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    if spark is None:
        spark = SparkSession.getActiveSession()
    if spark is None:
        # Executors must run this interpreter, where aeops and its pins are installed.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        spark = (
            SparkSession.builder.master(os.environ.get("AEOPS_SPARK_MASTER", "local[*]"))
            .appName("aeops")
            .getOrCreate()
        )
    frame = _read(spark, job.source.path)
    id_column = job.bundle.spec.id_column
    if id_column not in frame.columns:
        raise ValueError(
            f"the Spark engine needs the id column {id_column!r} in the input "
            f"(columns: {frame.columns}); row positions are not stable across partitions"
        )
    suite = job.bundle.spec.validation_suite
    if suite and isinstance(job.bundle.predictor.inputs, TabularInputs):
        checker = _PartitionChecker(suite, id_column, str(job.source.path))
        frame = frame.mapInArrow(checker, frame.schema)
    id_type = frame.schema[id_column].dataType
    udf = mlflow.pyfunc.spark_udf(
        spark,
        model_uri,
        result_type=_result_type(job, id_type.simpleString()),
        env_manager="local",
        params={"output": "embedding" if job.output == "embeddings" else "all"},
    )
    scored = frame.select(udf(F.struct(*[F.col(c) for c in frame.columns])).alias("r")).select(
        "r.*"
    )
    if job.output == "scores":
        scored = scored.select(id_column, "reconstruction_error", "is_anomaly")

    temp = destination.with_name(f".{destination.name}.tmp-{uuid.uuid4().hex[:8]}")
    temp.mkdir(parents=True)
    schema = job.output_schema(_arrow_type(id_type))
    writer = _PartitionWriter(str(temp), schema, job.output)
    try:
        counts = scored.mapInArrow(writer, "part string, rows long").collect()
        (temp / SUCCESS_MARKER).write_text("")
        if destination.is_dir():
            shutil.rmtree(destination)
        elif destination.exists():  # a single file from an earlier local run
            destination.unlink()
        temp.rename(destination)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    rows = sum(int(row["rows"]) for row in counts)
    logger.info(
        "Spark wrote %d rows of %s in %d parts to %s", rows, job.output, len(counts), destination
    )
    return JobReport(rows, len(counts), 0, 0, 0.0)


def _task() -> tuple[int, int]:
    """The running Spark task's partition and attempt ids (0, 0 outside a task)."""
    from pyspark import TaskContext

    context = TaskContext.get()
    return (0, 0) if context is None else (context.partitionId(), context.taskAttemptId())


def _arrow_type(spark_type: Any) -> pa.DataType:
    """The Arrow type of a Spark column type, as Spark hands it to Python."""
    from pyspark.sql.pandas.types import to_arrow_type

    return to_arrow_type(spark_type)


class _PartitionChecker:
    """Runs on each executor before the model: the bundle's validation suite on every
    batch, as the local engine checks it, so bad rows stop the job with their
    partition, rows and the failed expectations instead of being scored."""

    def __init__(self, suite: dict[str, Any], id_column: str, source: str) -> None:
        self.suite = suite
        self.id_column = id_column
        self.source = source

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        partition, _ = _task()
        suite = CompiledSuite(self.suite, {self.id_column})
        offset = 0
        for batch in batches:
            result = suite.evaluate(batch.to_pandas(), row_offset=offset)
            if not result.success:
                last = offset + batch.num_rows - 1
                where = f"{self.source}: Spark partition {partition}, its rows {offset}-{last},"
                raise BatchValidationError.of(where, result)
            offset += batch.num_rows
            yield batch


class _PartitionWriter:
    """Runs on each executor: writes its partition as one Parquet part, atomically."""

    def __init__(self, folder: str, schema: pa.Schema, output: str) -> None:
        self.folder = folder
        self.schema = schema
        self.output = output

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        index, attempt = _task()
        name = f"part-{index:05d}.parquet"
        target = Path(self.folder) / name
        # One temporary file per attempt: a retried or speculative task may run
        # beside the first, and the last to finish replaces the part whole.
        temp = Path(self.folder) / f".{name}.tmp-{attempt}"
        rows = 0
        try:
            with pq.ParquetWriter(temp, self.schema, **PARQUET_WRITE_OPTIONS) as writer:
                for batch in batches:
                    writer.write_batch(self._conform(batch))
                    rows += batch.num_rows
            temp.replace(target)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        yield pa.RecordBatch.from_pydict({"part": [name], "rows": [rows]})

    def _conform(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        columns: list[Any] = []
        for field in self.schema:
            column = batch.column(batch.schema.get_field_index(field.name))
            if pa.types.is_fixed_size_list(field.type):
                values = pa.array(column.flatten(), type=pa.float32())
                column = pa.FixedSizeListArray.from_arrays(values, field.type.list_size)
            columns.append(column.cast(field.type))
        return pa.RecordBatch.from_arrays(columns, schema=self.schema)
