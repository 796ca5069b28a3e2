"""Datasets of the batch jobs: a lazy input table, and a Parquet output that runs the job.

Like Kedro's Spark datasets, the node builds a lazy plan (an
:class:`~aeops.embedding.EmbedJob`) and saving it to the output dataset executes it,
streaming from the input to the output without holding the table in memory. Loading
the output (in a notebook, or a downstream node) reads the finished Parquet back.
"""

from __future__ import annotations

import codecs
import logging
import sys
from contextlib import nullcontext
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd
import pyarrow as pa
from kedro.io import AbstractDataset, DatasetError
from rich.progress import (
    BarColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from aeops._errors import is_refusal
from aeops.embedding import SUCCESS_MARKER, EmbedJob, JobReport, TableSource
from aeops.io._errors import DataFileError

logger = logging.getLogger(__name__)


class TableSourceDataset(AbstractDataset[None, TableSource]):
    """An input table (CSV or Parquet file, or folder of parts), loaded lazily.

    Example catalog entry for a semicolon-separated Latin-1 CSV::

        score_input:
          type: aeops.io.TableSourceDataset
          filepath: data/01_raw/export.csv
          load_args: {sep: ";", encoding: latin-1, dtype: {account: str}}

    ``dtype`` names CSV columns to read as text, as pandas' ``dtype`` does in
    ``train`` (zero-padded ids such as ``000042`` would otherwise read as 42).
    """

    def __init__(
        self,
        *,
        filepath: str,
        load_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Point at ``filepath``; nothing is read until the job runs.

        Raises:
            DataFileError: for a ``load_args`` key other than ``sep``, ``encoding`` and
                ``dtype`` (the CSV settings the streaming readers, pyarrow's and Spark's,
                share), or a ``dtype`` other than text.
        """
        self._filepath = Path(filepath)
        self._load_args = dict(load_args or {})
        unknown = sorted(set(self._load_args) - {*_CSV_LOAD_ARGS, "dtype"})
        if unknown:
            raise DataFileError(
                f"{self._filepath}: load_args {unknown} are not read by the batch jobs; "
                f"they take {[*_CSV_LOAD_ARGS, 'dtype']} for CSV parts"
            )
        self._text_columns = _text_columns(self._filepath, self._load_args.get("dtype"))
        sep = self._load_args.get("sep", ",")
        if not isinstance(sep, str) or len(sep) != 1:
            raise DataFileError(
                f"{self._filepath}: load_args sep={sep!r} must be one character (for a tab, "
                'write sep: "\t" in double quotes in YAML)'
            )
        encoding = str(self._load_args.get("encoding", "utf-8"))
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise DataFileError(
                f"{self._filepath}: load_args encoding={encoding!r} is not an encoding "
                "Python knows (utf-8, latin-1, cp1252, ...)"
            ) from None
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(PurePosixPath(self._filepath)), "load_args": self._load_args}

    def load(self) -> TableSource:
        """The source handle.

        Raises:
            DatasetError: if the path does not exist.
        """
        if not self._filepath.exists():
            raise DataFileError(f"{self._filepath} does not exist")
        options = {
            _CSV_LOAD_ARGS[key]: str(value)
            for key, value in self._load_args.items()
            if key in _CSV_LOAD_ARGS
        }
        return TableSource(self._filepath, **options, csv_text_columns=self._text_columns)

    def save(self, data: None) -> None:
        """Inputs are read-only."""
        raise DatasetError(f"{type(self).__name__} is read-only")

    def _exists(self) -> bool:
        return self._filepath.exists()


class BatchJobOutputDataset(AbstractDataset[EmbedJob, pd.DataFrame]):
    """Parquet output of an embedding or scoring job; saving a job runs it.

    ``filepath`` is a file for a single input file, or a folder (one output part per
    input part, and a ``_SUCCESS`` marker when all are done) for a folder of parts.
    Loading reads the finished output into one DataFrame.
    """

    def __init__(self, *, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        """Write to ``filepath``."""
        self._filepath = Path(filepath)
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(PurePosixPath(self._filepath))}

    def save(self, data: EmbedJob) -> None:
        """Run ``data`` into ``filepath``, with a progress bar at a terminal.

        Raises:
            DataFileError: for a refused input, setting or output path (bad rows, a
                missing column, ...), with the job's message; raised from the job's own
                error (``BatchValidationError``, ``SourceError``, ...). An earlier
                complete output file stays as it was; a folder output keeps the parts
                this run finished, for a rerun, and has no ``_SUCCESS``.
        """
        if not isinstance(data, EmbedJob):
            raise DatasetError(f"expected an EmbedJob to run, got {type(data).__name__}")
        parts = data.source.parts()
        counts = [data.source.num_rows(p) for p in parts]
        total = None if None in counts else sum(c or 0 for c in counts)
        columns = (
            TextColumn(f"{data.output}"),
            BarColumn(),
            TextColumn("{task.completed:,.0f} rows"),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, disable=not sys.stderr.isatty(), transient=True) as bar:
            task = bar.add_task(data.output, total=total, rate="")
            started = bar.get_time()

            def advance(rows: int) -> None:
                bar.advance(task, rows)
                elapsed = bar.get_time() - started
                done = bar.tasks[0].completed
                bar.update(task, rate=f"{done / elapsed:,.0f} rows/s" if elapsed > 0 else "")

            try:
                report = data.run(self._filepath, progress=advance)
            except Exception as error:
                if isinstance(error, DatasetError) or not is_refusal(error):
                    raise
                # As a dataset error, so Kedro puts only the entry's name before the
                # message, not its "Failed while saving data to dataset ..." line.
                raise DataFileError(str(error)) from error
        _log_to_active_run(data, report, self._filepath)

    def load(self) -> pd.DataFrame:
        """The job's answers as one DataFrame (``id`` and the output columns).

        The whole output is read into memory: fine for exploring a run in a notebook;
        stream the Parquet parts with pyarrow for outputs larger than memory.

        Raises:
            DatasetError: if the output does not exist, if a folder of parts has no
                ``_SUCCESS`` marker (the job was interrupted; rerunning it completes the
                missing parts), or if a part is not readable Parquet.
        """
        path = self._filepath
        if not path.exists():
            raise DataFileError(f"{path} does not exist: run the pipeline that writes it first")
        if path.is_file():
            return self._read(path)
        if not (path / SUCCESS_MARKER).exists():
            raise DataFileError(
                f"{path} is incomplete (no {SUCCESS_MARKER} marker): the job was interrupted; "
                "run it again to complete the missing parts"
            )
        parts = sorted(
            p
            for p in path.iterdir()
            if p.is_file()
            and p.suffix == ".parquet"
            and not p.name.startswith(".")  # a part still being written
        )  # set-aside rows are in _quarantine/, not among the parts
        if not parts:
            raise DataFileError(f"{path} holds no .parquet parts")
        return pd.concat([self._read(p) for p in parts], ignore_index=True)

    @staticmethod
    def _read(part: Path) -> pd.DataFrame:
        try:
            return pd.read_parquet(part)
        except (pa.ArrowException, OSError) as error:
            raise DataFileError(f"{part} is not a readable Parquet file: {error}") from error

    def _exists(self) -> bool:
        return self._filepath.exists()


def _log_to_active_run(job: EmbedJob, report: JobReport, destination: Path) -> None:
    """Record the job in the MLflow run kedro-mlflow opened for the pipeline, if any:
    the model it used, what it read and wrote, and for scores the alert rate and error
    quantiles beside the validation rows' (so score runs compare over time in the UI).

    A second job in the same run (``--pipelines=score,embed``) gets a nested run of
    its own, named after the job and the model (``score-aeops-demo-v3``), so neither
    overwrites the other; ``aeops.hooks.DescribeRun`` names the pipeline's own run so.
    The output is complete by then: a tracking store that fails here is warned of, not
    raised.
    """
    mlflow = sys.modules.get("mlflow")
    if mlflow is None or mlflow.active_run() is None:
        return
    try:
        tags, metrics = _job_record(job, report, destination)
        run_id = mlflow.active_run().info.run_id
        second_job = "output_path" in mlflow.MlflowClient().get_run(run_id).data.tags
        name = job_run_name(_PIPELINES[job.output], tags)
        with mlflow.start_run(run_name=name, nested=True) if second_job else nullcontext():
            mlflow.set_tags(tags)
            mlflow.log_metrics(metrics)
    except Exception as error:  # the job is done; only its record is missing
        logger.warning(
            "%s is complete, but recording the job in MLflow failed: %s", destination, error
        )


def _job_record(
    job: EmbedJob, report: JobReport, destination: Path
) -> tuple[dict[str, str], dict[str, float]]:
    """The job's tags and metrics."""
    provenance = job.bundle.provenance
    tags = {
        "model_uri": job.pinned_model_uri,
        "input_path": str(job.source.path),
        "output_path": str(destination),
    }
    for key in ("model_name", "model_version"):
        if key in provenance:
            tags[key] = str(provenance[key])
    if "run_id" in provenance:
        tags["model_run_id"] = str(provenance["run_id"])
    metrics: dict[str, float] = {
        "rows": report.rows,
        "quarantined_rows": report.quarantined_rows,
        "parts_written": report.parts_written,
        "parts_skipped": report.parts_skipped,
        "skipped_rows": report.skipped_rows,
        "seconds": report.seconds,
    }
    if report.seconds > 0:
        metrics["rows_per_second"] = report.rows / report.seconds
    threshold = job.bundle.predictor.threshold
    if report.errors is not None:
        metrics.update(report.errors.metrics())
        if threshold is not None:
            metrics["threshold"] = threshold.value
            # Named as the train run names them, to compare side by side.
            metrics.update({f"threshold_{k}": v for k, v in threshold.diagnostics.items()})
    return tags, metrics


def job_run_name(pipeline: str, tags: dict[str, str]) -> str:
    """The run name of a pipeline that uses a registered model: its pipeline's and the
    model's (``score-aeops-demo-v3``, ``evaluate-aeops-demo-v2``) when ``tags`` name the
    model (as a batch job tags it, or as ``evaluated_*``, ``generated_by_*`` or
    ``imputed_by_*``), else the pipeline's."""
    for prefix in _MODEL_TAG_PREFIXES:
        name, version = tags.get(f"{prefix}model_name"), tags.get(f"{prefix}model_version")
        if name and version:
            return f"{pipeline}-{name}-v{version}"
    return pipeline


# How each pipeline's run names the model it used (aeops.serving.tag_evaluated_model).
_MODEL_TAG_PREFIXES = ("", "evaluated_", "generated_by_", "imputed_by_")


# The CSV load_args a batch input takes, and the TableSource setting each one is
# (and dtype, whose columns are TableSource.csv_text_columns).
_CSV_LOAD_ARGS = {"sep": "csv_delimiter", "encoding": "csv_encoding"}

# The dtypes that mean text, as pandas takes them.
_TEXT_DTYPES = ("str", "string", "object")


def _text_columns(filepath: Path, dtype: Any) -> tuple[str, ...]:
    """The columns ``load_args: {dtype: {column: str}}`` reads as text.

    Raises:
        DataFileError: for a dtype that is not a mapping of columns to text.
    """
    if dtype is None:
        return ()
    if not isinstance(dtype, dict) or not all(isinstance(c, str) for c in dtype):
        raise DataFileError(
            f"{filepath}: load_args dtype={dtype!r} must map column names to str "
            "(dtype: {account: str})"
        )
    other = {
        c: kind for c, kind in dtype.items() if kind is not str and str(kind) not in _TEXT_DTYPES
    }
    if other:
        raise DataFileError(
            f"{filepath}: load_args dtype {other} is not read by the batch jobs, which read "
            "a column as text only (str); the model's features are read as numbers, and "
            "other columns' types are inferred"
        )
    return tuple(dtype)


# The pipeline that writes each output, whose name kedro-mlflow gives the run.
_PIPELINES = {"embeddings": "embed", "scores": "score"}
