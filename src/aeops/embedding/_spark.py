"""The Spark engine: the bundle as ``mlflow.pyfunc.spark_udf`` over a Spark DataFrame.

Spark reads the input, the registered model scores every partition through
``spark_udf`` (the same pyfunc and the same numbers as the local engine), and each
partition is written by its executor with pyarrow, so the output has exactly the
local engine's schema (a fixed-size-list embedding) and provenance metadata, which
Spark's own Parquet writer cannot express. Parts go to a temporary folder that is
renamed into place when every partition is done.

Spark numbers its partitions by the size of their input splits, not by where the
splits lie in the input. So the output is written one part per input split, named by
the input file's place in name order (as the local engine reads a folder) and the
split's first byte: read in name order, the parts give the rows in the input's order.
"""

from __future__ import annotations

import codecs
import itertools
import logging
import os
import re
import shutil
import sys
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from aeops._env import environment_defaults
from aeops.data import MISSING_TEXT, DataConfig, InputSchemaError
from aeops.embedding._checks import BatchValidationError, CompiledSuite
from aeops.embedding._engine import BatchJobError, EmbedJob, JobReport
from aeops.embedding._output import PARQUET_WRITE_OPTIONS, SUCCESS_MARKER
from aeops.embedding._source import PARQUET_SUFFIXES, SourceError, TableSource
from aeops.embedding._summary import ErrorSummary
from aeops.validation import validation_view

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

logger = logging.getLogger(__name__)

# Where each row comes from, carried from the scan to the writer: the input file and
# the first byte of its split (Spark's hidden ``_metadata`` fields).
_FILE = "__aeops_source_file"
_SPLIT = "__aeops_source_split"


def _read(spark: SparkSession, source: TableSource, numeric: Sequence[str]) -> DataFrame:
    """The input, with its ``numeric`` columns (the model's features) that are DECIMAL
    as doubles, as the local engine reads them."""
    path = source.path
    files = [path] if path.is_file() else sorted(path.iterdir())
    if any(p.suffix.lower() == ".csv" for p in files):
        frame = _read_csv(spark, source, numeric)
    else:
        frame = spark.read.parquet(str(path))
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    decimals = [
        f.name
        for f in frame.schema.fields
        if f.name in numeric and isinstance(f.dataType, T.DecimalType)
    ]
    return frame.withColumns({name: F.col(f"`{name}`").cast("double") for name in decimals})


def _read_csv(spark: SparkSession, source: TableSource, numeric: Sequence[str]) -> DataFrame:
    """A CSV input with the types and missing cells the local engine reads: inferred
    types, but dates and ``source.csv_text_columns`` as text (Spark would read
    timestamps, and a date-like or zero-padded id would come out changed), pandas'
    missing-value cells (``NA``, ``null``, ...) missing in text columns too (Spark
    reads only an empty cell as missing), and the ``numeric`` columns (the model's
    features) as doubles, which such a cell had made text.

    Raises:
        SourceError: naming a numeric column and a value in it that is no number.
    """
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    reader = spark.read.options(
        header=True, sep=source.csv_delimiter, encoding=_java_charset(source.csv_encoding)
    )
    frame = reader.csv(str(source.path), inferSchema=True)
    dates = (T.DateType, T.TimestampType, T.TimestampNTZType)
    fields = [
        T.StructField(field.name, T.StringType(), True)
        if field.name in source.csv_text_columns or isinstance(field.dataType, dates)
        else field
        for field in frame.schema.fields
    ]
    if fields != frame.schema.fields:
        frame = reader.schema(T.StructType(fields)).csv(str(source.path))
    missing = [token for token in MISSING_TEXT if token]
    text = [f.name for f in frame.schema.fields if isinstance(f.dataType, T.StringType)]
    cells = {name: F.col(f"`{name}`") for name in text}
    frame = frame.withColumns(
        {name: F.when(cell.isin(missing), None).otherwise(cell) for name, cell in cells.items()}
    )
    numbers = {}
    for name in [n for n in numeric if n in cells and n not in source.csv_text_columns]:
        cell = F.col(f"`{name}`")
        bad = frame.filter(cell.isNotNull() & cell.try_cast("double").isNull()).first()
        if bad is not None:
            raise SourceError(
                f"{source.path}: column {name!r} holds {bad[name]!r}, which is not a number"
            )
        numbers[name] = cell.try_cast("double")
    return frame.withColumns(numbers)


def _java_charset(encoding: str) -> str:
    """A Python codec's name as Java's charsets know it (``latin-1`` is ISO-8859-1);
    a UTF-8 byte-order mark is Spark's to drop."""
    name = codecs.lookup(encoding).name  # "iso8859-1", "utf-8", "utf-8-sig", "cp1252"
    if name == "utf-8-sig":
        return "UTF-8"
    if match := re.fullmatch(r"iso8859-(\d+)", name):
        return f"ISO-8859-{match[1]}"
    return name.upper()


def _result_type(job: EmbedJob, id_type: str) -> str:
    id_column = job.bundle.spec.id_column
    if job.output == "embeddings":
        return f"`{id_column}` {id_type}, embedding array<float>"
    return f"`{id_column}` {id_type}, reconstruction_error double, is_anomaly boolean"


_ARROW_BATCH_ROWS = "spark.sql.execution.arrow.maxRecordsPerBatch"


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
        master = os.environ.get("AEOPS_SPARK_MASTER", "local[*]")
        # One machine: the driver, its block manager and its UI listen on loopback only
        # (Spark takes the host's first address otherwise, and every interface for the
        # UI). The JVM reads it as it starts; the process's environment is put back.
        loopback = {"SPARK_LOCAL_IP": "127.0.0.1"} if master.startswith("local") else {}
        with environment_defaults(loopback):
            spark = (
                SparkSession.builder.master(master)
                .appName("aeops")
                # Its stage bar is for a terminal: in a log it is a line of carriage
                # returns, which a failed job leaves unfinished before the error.
                .config("spark.ui.showConsoleProgress", str(sys.stderr.isatty()).lower())
                .getOrCreate()
            )
    job.source.parts()  # the local engine's refusals: no input, no parts, subfolders
    frame = _read(spark, job.source, job.numeric_columns)
    id_column = job.bundle.spec.id_column
    if id_column not in frame.columns:
        raise BatchJobError(
            f"the Spark engine needs the id column {id_column!r} in the input "
            f"(columns: {frame.columns}); row positions are not stable across partitions"
        )
    job.refuse_missing_inputs(str(job.source.path), frame.columns)  # before any task runs
    inputs = frame.columns
    # Ranked by the unescaped paths, as the local engine sorts names ("a b" before "a!b").
    files = sorted(_file_key(uri) for uri in frame.inputFiles())
    file_ranks = {key: rank for rank, key in enumerate(files)}
    frame = frame.select(
        *[F.col(f"`{c}`") for c in inputs],
        F.col("_metadata.file_path").alias(_FILE),
        F.col("_metadata.file_block_start").alias(_SPLIT),
    )
    suite = job.bundle.spec.validation_suite
    if suite:  # time series never get here (see EmbedJob._refuse_what_would_cut_series)
        data = job.bundle.spec.data or {}
        checker = _PartitionChecker(suite, id_column, str(job.source.path), inputs, data)
        frame = frame.mapInArrow(checker, frame.schema)
    id_type = frame.schema[id_column].dataType
    udf = mlflow.pyfunc.spark_udf(
        spark,
        model_uri,
        result_type=_result_type(job, id_type.simpleString()),
        env_manager="local",
        params={"output": "embedding" if job.output == "embeddings" else "all"},
    )
    schema = job.output_schema(_local_id_type(job.source.path, id_column, id_type))
    # The id and what the model reads: MLflow warns of every other column, per task.
    model_inputs = [c for c in inputs if c == id_column or c in job.required_columns]
    answers = frame.select(
        udf(F.struct(*[F.col(f"`{c}`") for c in model_inputs])).alias("r"), _FILE, _SPLIT
    )
    scored = answers.select(
        *[F.col("r").getField(name).alias(name) for name in schema.names], _FILE, _SPLIT
    )

    temp = destination.with_name(f".{destination.name}.tmp-{uuid.uuid4().hex[:8]}")
    temp.mkdir(parents=True)
    writer = _SplitWriter(str(temp), schema, file_ranks)
    try:
        with (
            _arrow_batches_of_at_most(spark, job.rows_per_batch),
            _task_failures_said_once(spark),
            _executor_refusals(),
        ):
            written = scored.mapInArrow(writer, _WRITTEN_DDL).collect()
        if not written:  # no rows at all: one empty part keeps the schema readable
            pq.write_table(schema.empty_table(), temp / _part_name(0, 0), **PARQUET_WRITE_OPTIONS)
        (temp / SUCCESS_MARKER).write_text("")
        if destination.is_dir():
            shutil.rmtree(destination)
        elif destination.exists():  # a single file from an earlier local run
            destination.unlink()
        temp.rename(destination)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    rows = sum(int(row["rows"]) for row in written)
    parts = max(1, len(written))
    logger.info("Spark wrote %d rows of %s in %d parts to %s", rows, job.output, parts, destination)
    errors = None
    if job.output == "scores":
        errors = ErrorSummary()
        for row in written:
            errors.merge(
                ErrorSummary.from_sparse(
                    row["rows"],
                    row["flagged"],
                    row["zeros"],
                    row["maximum"],
                    row["buckets"],
                    row["counts"],
                )
            )
    return JobReport(rows, parts, 0, 0, 0.0, errors)


# aeops errors an executor may raise, by the name Spark's message gives them.
_EXECUTOR_REFUSALS: dict[str, type[ValueError]] = {
    f"{kind.__module__}.{kind.__name__}": kind for kind in (BatchValidationError, InputSchemaError)
}
_RAISED_ON_EXECUTOR = re.compile(r"^([\w.]+): ", re.MULTILINE)


@contextmanager
def _executor_refusals() -> Iterator[None]:
    """An aeops refusal raised on an executor (a batch that fails the model's suite)
    reaches the driver as Spark's PythonException, its message after the executor's
    traceback: raise it again as itself, with its own message."""
    from pyspark.errors import PythonException

    try:
        yield
    except PythonException as error:
        text = str(error)
        raised = [m for m in _RAISED_ON_EXECUTOR.finditer(text) if m[1] in _EXECUTOR_REFUSALS]
        if not raised:
            raise
        last = raised[-1]
        raise _EXECUTOR_REFUSALS[last[1]](text[last.end() :].rstrip()) from None


# Spark's loggers that print a failed task's error, with the JVM's stack, as it fails.
_TASK_FAILURE_LOGGERS = (
    "org.apache.spark.executor.Executor",
    "org.apache.spark.scheduler.TaskSetManager",
)


@contextmanager
def _task_failures_said_once(spark: SparkSession) -> Iterator[None]:
    """In local mode the driver raises a failed task's error itself, with the Python
    traceback from the worker, but Spark's log first prints it twice with some fifty
    lines of JVM frames each. Those loggers are off while the job runs; afterwards a
    logger that had no level of its own follows the session's again (``setLogLevel``).
    On a cluster, or through Spark Connect, they stay as they are: there they also
    report lost executors and retried tasks."""
    try:
        context = spark.sparkContext
    except Exception:  # Spark Connect: the driver's log is not this process's to set
        context = None
    if context is None or not (context.master or "").startswith("local"):
        yield
        return
    log4j = context._jvm.org.apache.logging.log4j  # type: ignore[union-attr]
    logging_context = log4j.LogManager.getContext(False)
    configuration = logging_context.getConfiguration()
    own_levels = {}  # None: the logger took its level from a parent
    for name in _TASK_FAILURE_LOGGERS:
        config = configuration.getLoggerConfig(name)
        own_levels[name] = config.getLevel() if config.getName() == name else None
    for name in own_levels:
        log4j.core.config.Configurator.setLevel(name, log4j.Level.OFF)
    try:
        yield
    finally:
        configuration = logging_context.getConfiguration()
        for name, level in own_levels.items():
            if level is None:
                configuration.removeLogger(name)
            else:
                log4j.core.config.Configurator.setLevel(name, level)
        logging_context.updateLoggers()


@contextmanager
def _arrow_batches_of_at_most(spark: SparkSession, rows: int) -> Iterator[None]:
    """Spark hands Python at most ``rows`` rows per Arrow batch while the job runs (the
    local engine's :attr:`~aeops.embedding.EmbedJob.rows_per_batch`): its default of
    10,000 rows of 64 x 64 RGB images is 0.5 GB of samples per batch, twice that as
    float64. A session's smaller setting is kept, and put back afterwards."""
    before = spark.conf.get(_ARROW_BATCH_ROWS)
    if before is not None and 0 < int(before) <= rows:
        yield
        return
    spark.conf.set(_ARROW_BATCH_ROWS, str(rows))
    try:
        yield
    finally:
        if before is None:
            spark.conf.unset(_ARROW_BATCH_ROWS)
        else:
            spark.conf.set(_ARROW_BATCH_ROWS, before)


def _file_key(uri: str) -> str:
    """A file's URI as one spelling: Spark lists ``file:///a%20b`` and names the same
    file ``file:/a%20b`` in a row's ``_metadata``."""
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}{unquote(parts.path)}"


def _part_name(file_rank: int, split_start: int) -> str:
    """The output part of the input split starting at byte ``split_start`` of the input
    file at ``file_rank`` in name order; the names sort in the input's row order."""
    return f"part-{file_rank:06d}-{split_start:015d}.parquet"


def _task() -> tuple[int, int]:
    """The running Spark task's partition and attempt ids (0, 0 outside a task)."""
    from pyspark import TaskContext

    context = TaskContext.get()
    return (0, 0) if context is None else (context.partitionId(), context.taskAttemptId())


def _local_id_type(path: Path, id_column: str, spark_type: Any) -> pa.DataType:
    """The id column's type as the local engine writes it, so both engines' outputs
    share one schema: a Parquet input's own Arrow type (Spark reads uint32 as long),
    and for a CSV pyarrow's inference (int64 and float64, where Spark infers int32
    for small whole numbers)."""
    from pyspark.sql import types as T

    parquet = [path] if path.is_file() else sorted(path.iterdir())
    for part in parquet:
        if part.is_file() and part.suffix.lower() in PARQUET_SUFFIXES:
            schema = pq.read_schema(part)
            if id_column in schema.names:
                return schema.field(id_column).type
    if isinstance(spark_type, T.ByteType | T.ShortType | T.IntegerType | T.LongType):
        return pa.int64()
    if isinstance(spark_type, T.FloatType | T.DoubleType | T.DecimalType):
        return pa.float64()
    return _arrow_type(spark_type)


def _arrow_type(spark_type: Any) -> pa.DataType:
    """The Arrow type of a Spark column type, as Spark hands it to Python."""
    from pyspark.sql.pandas.types import to_arrow_type

    return to_arrow_type(spark_type)


class _PartitionChecker:
    """Runs on each executor before the model: the bundle's validation suite on every
    batch, as the local engine checks it, so bad rows stop the job with their
    partition, rows and the failed expectations instead of being scored."""

    def __init__(
        self,
        suite: dict[str, Any],
        id_column: str,
        source: str,
        inputs: list[str],
        data: dict[str, Any],
    ) -> None:
        self.suite = suite
        self.id_column = id_column
        self.source = source
        self.inputs = inputs
        self.data = data

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        partition, _ = _task()
        suite = CompiledSuite(self.suite, {self.id_column})
        config = DataConfig(**self.data)
        offset = 0
        for batch in batches:
            frame = batch.select(self.inputs).to_pandas()
            if config.kind != "tabular":  # images: checked as the facts the suite expects
                frame = validation_view(frame, config).frame
            result = suite.evaluate(frame, row_offset=offset)
            if not result.success:
                last = offset + batch.num_rows - 1
                where = f"{self.source}: Spark partition {partition}, its rows {offset}-{last},"
                raise BatchValidationError.of(where, result)
            offset += batch.num_rows
            yield batch


# What each task reports of every part it wrote: its rows, and for scores their
# ErrorSummary (empty for embeddings).
_WRITTEN_DDL = (
    "part string, rows long, flagged long, zeros long, maximum double, "
    "buckets array<long>, counts array<long>"
)
_WRITTEN = pa.schema(
    [
        ("part", pa.string()),
        ("rows", pa.int64()),
        ("flagged", pa.int64()),
        ("zeros", pa.int64()),
        ("maximum", pa.float64()),
        ("buckets", pa.list_(pa.int64())),
        ("counts", pa.list_(pa.int64())),
    ]
)


def _written_row(part: _OpenPart) -> dict[str, Any]:
    buckets, counts = part.errors.to_sparse()
    return {
        "part": part.name,
        "rows": part.rows,
        "flagged": part.errors.flagged,
        "zeros": part.errors.zeros,
        "maximum": part.errors.maximum,
        "buckets": buckets,
        "counts": counts,
    }


@dataclass
class _OpenPart:
    """An output part being written, under its temporary name."""

    name: str
    temp: Path
    writer: pq.ParquetWriter
    rows: int = 0
    errors: ErrorSummary = field(default_factory=ErrorSummary)


class _SplitWriter:
    """Runs on each executor: writes the rows of each input split in its partition as
    one Parquet part (see :func:`_part_name`), each atomically."""

    def __init__(self, folder: str, schema: pa.Schema, file_ranks: dict[str, int]) -> None:
        self.folder = folder
        self.schema = schema
        self.file_ranks = file_ranks

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        _, attempt = _task()
        written: list[_OpenPart] = []
        part: _OpenPart | None = None
        try:
            for batch in batches:
                for name, rows in self._splits(batch):
                    if part is not None and part.name != name:
                        written.append(self._finish(part))
                        part = None
                    if part is None:
                        part = self._open(name, attempt)
                    conformed = self._conform(rows)
                    part.writer.write_batch(conformed)
                    part.rows += rows.num_rows
                    if "reconstruction_error" in self.schema.names:
                        part.errors.add(
                            conformed.column("reconstruction_error").to_numpy(),
                            conformed.column("is_anomaly").to_numpy(zero_copy_only=False),
                        )
            if part is not None:
                written.append(self._finish(part))
                part = None
        except BaseException:
            if part is not None:
                part.writer.close()
                part.temp.unlink(missing_ok=True)
            raise
        if written:
            yield pa.RecordBatch.from_pylist([_written_row(p) for p in written], _WRITTEN)

    def _splits(self, batch: pa.RecordBatch) -> Iterator[tuple[str, pa.RecordBatch]]:
        """``batch`` cut into runs of rows from one input split, with their part names."""
        files, starts = batch.column(_FILE), batch.column(_SPLIT)
        if batch.num_rows == 0:
            return
        changed = pc.or_(
            pc.not_equal(files.slice(1), files.slice(0, len(files) - 1)),
            pc.not_equal(starts.slice(1), starts.slice(0, len(starts) - 1)),
        )
        bounds = [0, *(np.flatnonzero(changed.to_numpy(zero_copy_only=False)) + 1), len(batch)]
        for first, end in itertools.pairwise(bounds):
            rank = self.file_ranks[_file_key(files[first].as_py())]
            yield _part_name(rank, starts[first].as_py()), batch.slice(first, end - first)

    def _open(self, name: str, attempt: int) -> _OpenPart:
        # One temporary file per attempt: a retried or speculative task may run
        # beside the first, and the last to finish replaces the part whole.
        temp = Path(self.folder) / f".{name}.tmp-{attempt}"
        return _OpenPart(name, temp, pq.ParquetWriter(temp, self.schema, **PARQUET_WRITE_OPTIONS))

    def _finish(self, part: _OpenPart) -> _OpenPart:
        part.writer.close()
        part.temp.replace(Path(self.folder) / part.name)
        return part

    def _conform(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        columns: list[Any] = []
        for target in self.schema:
            column = batch.column(batch.schema.get_field_index(target.name))
            if pa.types.is_fixed_size_list(target.type):
                values = pa.array(column.flatten(), type=pa.float32())
                column = pa.FixedSizeListArray.from_arrays(values, target.type.list_size)
            columns.append(column.cast(target.type))
        return pa.RecordBatch.from_arrays(columns, schema=self.schema)
