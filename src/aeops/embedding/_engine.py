"""The local streaming engine: read, validate, score and write, overlapped and bounded.

A reader thread pulls record batches from the source, checks them against the
bundle's suite and scales them; the calling thread runs the model (on the GPU when
the bundle's model is there); a writer thread appends the answers to a temporary
Parquet file that is renamed into place only when complete. Queues of two batches
between the stages keep memory flat whatever the input size. A folder of parts is
processed part by part into a folder of outputs; a rerun skips the parts already
written, so a crash never duplicates or loses rows.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from aeops.bundle import LoadedBundle, provenance_metadata
from aeops.data import (
    DataConfig,
    InputSchemaError,
    TabularInputs,
    WindowInputs,
    parse_timestamps,
)
from aeops.embedding._arrow_tabular import ArrowTabularPath
from aeops.embedding._checks import BatchValidationError, CompiledSuite
from aeops.embedding._output import (
    FAILED_COLUMN,
    SUCCESS_MARKER,
    AtomicParquetWriter,
    listing,
    remove_if_empty,
    written_by_aeops,
)
from aeops.embedding._source import PARQUET_SUFFIXES, SourceError, TableSource, open_parquet
from aeops.embedding._summary import ErrorSummary, alert_rate_is_unusual, describe_alert_rate
from aeops.embedding._threads import background, cpu_share_for_the_model
from aeops.validation import validation_view

logger = logging.getLogger(__name__)

Output = Literal["embeddings", "scores"]


class BatchJobError(ValueError):
    """A batch job that cannot run as asked (its settings, input or output path); the
    message says why and what to change. Nothing at the output path has changed."""


@dataclass(frozen=True)
class JobReport:
    """What a job did.

    Attributes:
        rows: rows written (set-aside rows not included).
        parts_written: input parts processed in this run.
        parts_skipped: parts a rerun found already complete.
        quarantined_rows: rows set aside for failing the model's suite.
        seconds: the job's wall-clock time.
        errors: for scores, the rows flagged and the errors' distribution over the
            whole output: the parts a rerun skipped are read back into it. None for
            embeddings.
        skipped_rows: rows in the parts a rerun skipped; with ``rows``, the output's.
    """

    rows: int
    parts_written: int
    parts_skipped: int
    quarantined_rows: int
    seconds: float
    errors: ErrorSummary | None = None
    skipped_rows: int = 0


# pandas' nullable integer dtypes, which keep int ids with a null exact.
_NULLABLE_INTEGERS = {
    pa.int8(): pd.Int8Dtype(),
    pa.int16(): pd.Int16Dtype(),
    pa.int32(): pd.Int32Dtype(),
    pa.int64(): pd.Int64Dtype(),
    pa.uint8(): pd.UInt8Dtype(),
    pa.uint16(): pd.UInt16Dtype(),
    pa.uint32(): pd.UInt32Dtype(),
    pa.uint64(): pd.UInt64Dtype(),
}


@dataclass(frozen=True)
class _Prepared:
    """A batch made ready for the model in the reader thread."""

    n_rows: int  # rows kept (scored)
    n_read: int  # rows read
    ids: pa.Array
    samples: np.ndarray
    rejected: pa.RecordBatch | None  # the input's columns and aeops_failed
    recycle: Callable[[], None] | None = None  # gives the samples' memory back, once used


# A record batch holds at most this many bytes of the model's float32 samples: 65,536
# rows of 64 features, as before; of 64 x 64 RGB images, 341 rows, not 65,536 (3 GiB,
# 6 as float64 on the way). A batch's conversions and checks hold about 18 times its
# samples: scoring 47,520 such images (one 560 MB row group) peaked at 1.1 GB RSS, and
# at 2.0 GB with 64 MiB batches, in the same time.
_BATCH_SAMPLE_BYTES = 16 << 20

# The metadata key of the invalid_rows policy a part was written under.
_INVALID_ROWS = "aeops.invalid_rows"


@dataclass(frozen=True)
class EmbedJob:
    """A lazy plan: score ``source`` with ``bundle`` into Parquet; :meth:`run` executes it.

    Attributes:
        source: the input table.
        bundle: the loaded model bundle.
        output: ``embeddings`` (id, embedding) or ``scores`` (id, reconstruction_error,
            is_anomaly).
        batch_rows: rows per record batch, at most (see :attr:`rows_per_batch`).
        invalid_rows: ``fail`` stops at the first batch with a failed expectation;
            ``quarantine`` writes failing rows to ``<output stem>.quarantine.parquet``
            beside the output (a folder's to ``_quarantine/<part>.parquet`` in it) and
            goes on with the rest (a missing or mistyped column always fails).
        engine: ``local`` streams in this process; ``spark`` runs the bundle as
            ``mlflow.pyfunc.spark_udf`` over a Spark DataFrame (see ``_spark``), and
            writes a folder of parts.
    """

    source: TableSource
    bundle: LoadedBundle
    output: Output = "embeddings"
    batch_rows: int = 65536
    invalid_rows: Literal["fail", "quarantine"] = "fail"
    engine: Literal["local", "spark"] = "local"

    @property
    def _id_column(self) -> str:
        return self.bundle.spec.id_column

    @property
    def rows_per_batch(self) -> int:
        """:attr:`batch_rows`, or fewer where that many rows would make more than
        _BATCH_SAMPLE_BYTES of float32 samples (large images), so memory stays bounded
        by bytes, not rows."""
        sample_bytes = 4 * int(np.prod(self.bundle.predictor.inputs.sample_shape))
        return max(1, min(self.batch_rows, _BATCH_SAMPLE_BYTES // sample_bytes))

    @property
    def pinned_model_uri(self) -> str:
        """The exact registered version, so executors load what the driver loaded even
        if an alias moves during the job."""
        return self.bundle.pinned_model_uri

    @functools.cached_property
    def numeric_columns(self) -> tuple[str, ...]:
        """The model's numeric input columns (a table's or a series' features; an
        image model has none)."""
        inputs = self.bundle.predictor.inputs
        return tuple(inputs.columns) if isinstance(inputs, TabularInputs | WindowInputs) else ()

    @functools.cached_property
    def _csv_types(self) -> dict[str, pa.DataType]:
        """A CSV's numeric features are read as float64, whatever their first rows look
        like (pandas reads them so in ``train``); other columns keep pyarrow's types."""
        return dict.fromkeys(self.numeric_columns, pa.float64())

    @functools.cached_property
    def _data_config(self) -> DataConfig:
        """The bundle's ``data`` block, parsed once per job rather than per batch."""
        return DataConfig(**self.bundle.spec.data) if self.bundle.spec.data else DataConfig()

    def part_metadata(
        self, part: Path | None = None, first_id: int | None = None
    ) -> dict[str, str]:
        """Parquet key-value metadata: the model's provenance and the output kind, and
        for the local engine the input file it came from (name, size, modification time),
        so a rerun can tell a finished part from one an input or model change outdated.
        A folder's part without ids records the first id it was given (see
        :meth:`_first_ids`)."""
        metadata = {k: str(v) for k, v in provenance_metadata(self.bundle, self.output).items()}
        if first_id is not None:
            metadata["aeops.first_generated_id"] = str(first_id)
        if part is not None:
            stat = part.stat()
            metadata.update(
                {
                    "aeops.source_part": part.name,
                    "aeops.source_folder": str(part.parent.resolve()),
                    "aeops.source_bytes": str(stat.st_size),
                    "aeops.source_mtime_ns": str(stat.st_mtime_ns),
                    # A part finished with rows set aside is not one a failing run accepts.
                    _INVALID_ROWS: self.invalid_rows,
                }
            )
            if part.suffix.lower() not in PARQUET_SUFFIXES:
                # Read with other settings (a column now text), its ids may differ.
                metadata["aeops.csv_reading"] = self.source.csv_reading
        return metadata

    def output_schema(
        self, id_type: pa.DataType, part: Path | None = None, first_id: int | None = None
    ) -> pa.Schema:
        """The output's Arrow schema, with :meth:`part_metadata` as key-value metadata."""
        fields = [pa.field(self._id_column, id_type)]
        if self.output == "embeddings":
            latent = self.bundle.predictor.model.config.latent_dim
            fields.append(pa.field("embedding", pa.list_(pa.float32(), latent)))
        else:
            fields += [
                pa.field("reconstruction_error", pa.float64()),
                pa.field("is_anomaly", pa.bool_()),
            ]
        return pa.schema(fields, metadata=self.part_metadata(part, first_id))

    def _answers(self, prepared: _Prepared, schema: pa.Schema) -> pa.RecordBatch:
        """Score prepared samples and map them back to the batch's rows."""
        predictor = self.bundle.predictor
        ids = prepared.ids
        if self.output == "embeddings":  # the encoder alone
            samples = predictor.embed_samples(prepared.samples)
            embedding = predictor.inputs.row_embeddings(prepared.n_rows, samples)
            flat = pa.array(np.ascontiguousarray(embedding, dtype=np.float32).reshape(-1))
            column = pa.FixedSizeListArray.from_arrays(flat, embedding.shape[1])
            return pa.RecordBatch.from_arrays([ids, column], schema=schema)
        _, errors = predictor.score_samples(prepared.samples, prepared.n_rows)
        assert predictor.threshold is not None, "a registered bundle always has a threshold"
        flags = errors > predictor.threshold.value
        return pa.RecordBatch.from_arrays([ids, pa.array(errors), pa.array(flags)], schema=schema)

    def _frames(
        self, part: Path, csv_types: dict[str, pa.DataType]
    ) -> Iterator[tuple[pa.RecordBatch, int]]:
        """Input batches with their first row's number; a series part comes whole,
        since windows need the neighbouring rows."""
        if isinstance(self.bundle.predictor.inputs, WindowInputs):
            batches = list(self.source.batches(part, self.batch_rows, csv_types))
            if not batches:  # no rows: the part gets an empty output
                return
            table = pa.Table.from_batches(batches).combine_chunks()
            yield from ((b, 0) for b in table.to_batches())
            return
        offset = 0
        for batch in self.source.batches(part, self.rows_per_batch, csv_types):
            rows = batch.num_rows
            yield batch, offset
            # Dropped before the next read: the last batch of a row group holds the
            # whole decoded group (slices share its buffers) while the next one decodes.
            del batch
            offset += rows

    def _checked(
        self, frame: pd.DataFrame, offset: int, part: Path, suite: CompiledSuite | None
    ) -> tuple[np.ndarray, list[str]] | None:
        """The rows to set aside and why, None when every row passes; an error instead
        when failing."""
        if suite is None:
            return None
        config = self._data_config
        if config.kind == "timeseries" and config.timestamp_column in frame.columns:
            # Read as `train` reads them: pyarrow takes only ISO 8601 as date-times.
            frame = parse_timestamps(frame.copy(deep=False), config, str(part))
        view = frame if config.kind == "tabular" else validation_view(frame, config).frame
        result = suite.evaluate(view, row_offset=offset)
        if result.success:
            return None
        if result.column_failures or self.invalid_rows == "fail":
            last = offset + len(frame) - 1
            raise BatchValidationError.of(f"{part}: rows {offset}-{last}", result)
        return np.asarray(result.bad_rows, dtype=bool), list(result.reasons_of_bad_rows())

    def _prepare(
        self,
        batches: Iterator[tuple[pa.RecordBatch, int]],
        part: Path,
        suite: CompiledSuite | None,
        first_id: int,
    ) -> Iterator[_Prepared]:
        """Convert, check and scale each batch; runs ahead of the model in a thread.

        Clean batches of a tabular bundle take the Arrow path (no pandas); any other
        batch, and any batch that path declines, is checked through pandas, which names
        every failure.
        """
        fast = ArrowTabularPath.for_bundle(self.bundle.predictor, suite, self._id_column)
        for batch, offset in batches:
            prepared = self._prepare_batch(batch, offset, fast, part, suite, first_id)
            del batch  # before the next read, as in _frames
            yield prepared

    def _prepare_batch(
        self,
        batch: pa.RecordBatch,
        offset: int,
        fast: ArrowTabularPath | None,
        part: Path,
        suite: CompiledSuite | None,
        first_id: int,
    ) -> _Prepared:
        """One batch of :meth:`_prepare`; rows without an id get ``first_id`` plus their
        row number in the part."""
        if fast is not None and (ready := fast.prepare(batch, first_id + offset)) is not None:
            recycle = functools.partial(fast.recycle, ready)
            return _Prepared(ready.n_rows, ready.n_rows, ready.ids, ready.samples, None, recycle)
        # Through pandas, integer ids with a null become floats (ids above 2**53
        # change, and look duplicated to the suite), and a batch's set-aside rows could
        # get other column types than the first batch's. So the suite sees exact
        # nullable ids, and ids and set-aside rows are cut from the Arrow batch.
        frame = batch.to_pandas()
        if self._id_column in frame.columns and batch.column(self._id_column).null_count:
            exact = batch.column(self._id_column).to_pandas(types_mapper=_NULLABLE_INTEGERS.get)
            frame[self._id_column] = exact.array
        checked = self._checked(frame, offset, part, suite)
        has_ids = self._id_column in batch.schema.names
        kept_batch, rejected, positions = batch, None, np.arange(batch.num_rows)
        if checked is not None:
            bad, reasons = checked
            kept_batch = batch.filter(pa.array(~bad))
            rejected = batch.filter(pa.array(bad)).append_column(
                FAILED_COLUMN, pa.array(reasons, pa.string())
            )
            if not has_ids:  # the ids these rows would have had, to find them by
                generated = np.flatnonzero(bad).astype(np.int64) + first_id + offset
                rejected = rejected.add_column(0, self._id_column, pa.array(generated))
            positions = np.flatnonzero(~bad)
            frame = frame[~bad].reset_index(drop=True)
        if has_ids:
            ids = kept_batch.column(self._id_column)
        else:
            ids = pa.array(positions.astype(np.int64) + first_id + offset)
        try:
            samples = self.bundle.predictor.samples(frame)
        except InputSchemaError as error:  # say a series too short for a window
            raise InputSchemaError(f"{part}: {error}") from error
        return _Prepared(len(frame), batch.num_rows, ids, samples, rejected)

    def _refuse_what_would_cut_series(self) -> None:
        """A series bundle scores windows of consecutive steps, so it needs each part
        whole and in order: setting rows aside, or Spark's batches, would cut it."""
        if not isinstance(self.bundle.predictor.inputs, WindowInputs):
            return
        if self.invalid_rows == "quarantine":
            raise BatchJobError(
                "invalid_rows='quarantine' cannot be used with a time-series model: "
                "windows around a set-aside row would join steps that are not neighbours. "
                "Use invalid_rows='fail', which names the bad rows, then fix or drop them."
            )
        if self.engine == "spark":
            raise BatchJobError(
                "engine='spark' cannot run a time-series model: Spark hands the model "
                "rows in independent batches, which would cut windows at every batch edge. "
                "Use engine='local', which reads each part as one series."
            )

    def _stale_reason(self, target: Path, part: Path, first_id: int | None) -> str | None:
        """Why an existing output part must be written again, or None when it is this
        job's answer for this input part (written by the same model, from the same file).
        """
        try:
            raw = pq.read_schema(target).metadata or {}
        except (pa.ArrowInvalid, OSError) as error:
            return f"it cannot be read ({error})"
        found = {k.decode(): v.decode() for k, v in raw.items() if k.startswith(b"aeops.")}
        expected = self.part_metadata(part, first_id)
        changed = [
            f"{key} {found.get(key, '(none)')} -> {value}"
            for key, value in expected.items()
            if found.get(key) != value
            # A part written under `fail` passed every check: quarantine's answer too.
            # One written under `quarantine` may have set rows aside (even if their
            # file has been moved since), so a run under `fail` writes it again.
            and not (key == _INVALID_ROWS and found.get(key) == "fail")
        ]
        return "; ".join(changed) or None

    def _id_type(self, part: Path) -> pa.DataType:
        """The id column's type in a Parquet ``part``; int64 (row numbers) otherwise."""
        if part.suffix.lower() in PARQUET_SUFFIXES:
            schema = open_parquet(part).schema_arrow
            if self._id_column in schema.names:
                return schema.field(self._id_column).type
        return pa.int64()

    def _targets(self, parts: list[Path], destination: Path) -> list[Path]:
        """Each part's output file; two parts of a folder that would share one (say
        ``a.csv`` and ``a.parquet``) are refused."""
        targets = [self._target(destination, part) for part in parts]
        seen: dict[Path, Path] = {}
        for part, target in zip(parts, targets, strict=True):
            if target in seen:
                raise BatchJobError(
                    f"{seen[target].name} and {part.name} in {self.source.path} would both "
                    f"be written to {target.name}; rename one of them"
                )
            seen[target] = part
        return targets

    def _earlier_parts(self, destination: Path, targets: list[Path]) -> list[Path]:
        """The output parts in ``destination`` that this input will not write: an
        earlier run's, from parts renamed or deleted since, another input folder, or
        the Spark engine. Read with the rest, their rows would join this input's.

        Raises:
            ValueError: for a Parquet file no aeops job wrote (no ``aeops.`` metadata),
                before anything at the destination changes.
        """
        if not destination.is_dir():
            return []
        keep = set(targets)
        earlier = []
        for path in sorted(destination.glob("*.parquet")):
            if path in keep:
                continue
            try:
                metadata = pq.read_schema(path).metadata or {}
            except (pa.ArrowInvalid, OSError):
                metadata = {}
            if not any(key.startswith(b"aeops.") for key in metadata):
                raise BatchJobError(
                    f"the output folder {destination} holds {path.name}, which no aeops job "
                    "wrote (or which cannot be read); it would be read with the output. Move "
                    "it, or write elsewhere"
                )
            earlier.append(path)
        return earlier

    def _remove_earlier_parts(self, parts: list[Path]) -> None:
        """Drop :meth:`_earlier_parts` and their set-aside rows."""
        for path in parts:
            logger.warning("Removing %s: its input part is not in %s", path, self.source.path)
            path.unlink(missing_ok=True)
            self._quarantine_target(path).unlink(missing_ok=True)

    def _quarantine_target(self, target: Path) -> Path:
        """Where a part's set-aside rows go: beside a file output, or in the folder
        output's ``_quarantine/``, which readers of the folder (pyarrow, Spark) skip."""
        if self.source.is_folder:
            return target.parent / "_quarantine" / target.name
        return target.with_name(f"{target.stem}.quarantine.parquet")

    def _target(self, destination: Path, part: Path) -> Path:
        return destination / f"{part.stem}.parquet" if self.source.is_folder else destination

    def run(self, destination: Path, progress: Callable[[int], None] | None = None) -> JobReport:
        """Execute the plan into ``destination`` (a file, or a folder for a folder input).

        Args:
            destination: the output Parquet file, or folder of parts for a folder input.
            progress: called with the number of rows read after each batch (negative
                when a part is read again).

        Returns:
            What the job did: rows written and set aside, parts written and skipped.

        Raises:
            BatchValidationError: for a batch that fails and ``invalid_rows`` is ``fail``;
                nothing is left at ``destination`` for that part.
            SourceError: for an unreadable input.
            ValueError: for a destination of the other shape (a file for a folder input,
                a folder that is not a finished aeops output for a file input), a folder
                input with no parts, or quarantine asked of the Spark engine.
        """
        started = time.perf_counter()
        self._refuse_what_would_cut_series()
        if self.engine == "spark":
            report = self._run_on_spark(destination)
            if report.errors is not None:
                self._log_alert_rate(report.errors)
            return dataclasses.replace(report, seconds=time.perf_counter() - started)
        suite_dict = self.bundle.spec.validation_suite
        suite = CompiledSuite(suite_dict, {self._id_column}) if suite_dict else None
        parts = self.source.parts()
        if self.source.is_folder and not parts:
            raise BatchJobError(f"{self.source.path} holds no parts")
        # Checked before anything at the destination moves.
        replaces_a_folder = self._refuse_a_destination_of_the_other_shape(destination)
        targets = self._targets(parts, destination)
        earlier = self._earlier_parts(destination, targets) if self.source.is_folder else []
        marker = destination / SUCCESS_MARKER

        def unmark() -> None:
            """A folder output changes: it is not complete until the marker is back."""
            if self.source.is_folder:
                marker.unlink(missing_ok=True)

        first_ids = self._first_ids(parts)
        rows = written = skipped = quarantined = skipped_rows = 0
        errors = ErrorSummary() if self.output == "scores" else None
        created = self.source.is_folder and not destination.exists()
        try:
            for part, target, first_id in zip(parts, targets, first_ids, strict=True):
                if self.source.is_folder and target.exists():
                    stale = self._stale_reason(target, part, first_id)
                    if stale is None:
                        skipped += 1
                        skipped_rows += pq.read_metadata(target).num_rows
                        if errors is not None:  # so the job's rates cover its whole output
                            errors.merge(_errors_of(target))
                        logger.info("Skipping %s: %s is already complete", part.name, target)
                        continue
                    logger.warning("Writing %s again: %s", target, stale)
                with cpu_share_for_the_model(self.bundle.predictor.model):
                    part_rows, part_quarantined, part_errors = self._run_part_widening_csv_ids(
                        part, target, suite, unmark, first_id, replaces_a_folder, progress
                    )
                if errors is not None and part_errors is not None:
                    errors.merge(part_errors)
                rows += part_rows
                quarantined += part_quarantined
                written += 1
        except BaseException:
            # The finished parts stay for a rerun; folders this run made and left
            # empty go, so a failed first part leaves nothing at the destination.
            if self.source.is_folder:
                remove_if_empty(destination / "_quarantine")
            if created:
                remove_if_empty(destination)
            raise
        if self.source.is_folder:
            if earlier:
                unmark()
                self._remove_earlier_parts(earlier)
            marker.write_text("")
        if errors is not None:
            self._log_alert_rate(errors)
        seconds = time.perf_counter() - started
        return JobReport(rows, written, skipped, quarantined, seconds, errors, skipped_rows)

    def _log_alert_rate(self, errors: ErrorSummary) -> None:
        """Say how many rows were flagged, beside the validation rows' share; warn when
        it is far above that."""
        if not errors.rows:
            return  # no rows at all
        threshold = self.bundle.predictor.threshold
        diagnostics = {} if threshold is None else threshold.diagnostics
        expected = diagnostics.get("validation_alert_rate")
        line = describe_alert_rate(errors, expected)
        if alert_rate_is_unusual(errors, expected, diagnostics.get("validation_rows")):
            logger.warning(
                "%s: far more than chance explains. Has the data drifted from what the "
                "model trained on (a feature's units or encoding)?",
                line,
            )
        else:
            logger.info("%s", line)

    def _run_on_spark(self, destination: Path) -> JobReport:
        if self.invalid_rows == "quarantine":
            raise BatchJobError(
                "invalid_rows='quarantine' needs engine='local'; the Spark engine stops "
                "at the first batch that fails the model's suite (invalid_rows='fail')"
            )
        from aeops.embedding._spark import run_spark

        return run_spark(self, self.pinned_model_uri, destination)

    def _first_ids(self, parts: list[Path]) -> list[int | None]:
        """For each part, the id its first row gets when the input has no id column; None
        for every part when it has one. Generated ids are row positions in the whole
        input, so a folder's parts never repeat one another's: a part starts where the
        parts before it end (Parquet footers; CSV parts are counted). A folder whose
        parts disagree on the id column is refused."""
        if not self.source.is_folder:
            return [None]
        lacking = [not self.source.has_column(part, self._id_column) for part in parts]
        if not any(lacking):
            return [None] * len(parts)
        if not all(lacking):
            with_ids = parts[lacking.index(False)].name
            without = parts[lacking.index(True)].name
            raise SourceError(
                f"{self.source.path}: the parts disagree on the id column "
                f"{self._id_column!r}: {with_ids} has it, {without} does not. Give every "
                "part the id column, or none (ids are then the rows' positions in the "
                "whole input); mixing the two could repeat an id"
            )
        return list(itertools.accumulate(map(self.source.count_rows, parts[:-1]), initial=0))

    @functools.cached_property
    def required_columns(self) -> tuple[str, ...]:
        """The input columns the job needs (:attr:`LoadedBundle.required_columns`)."""
        return self.bundle.required_columns

    def refuse_missing_inputs(self, where: str, columns: list[str]) -> None:
        """Refuse an input whose ``columns`` lack one the job needs (see
        :attr:`required_columns`): an input with no rows has no batch for the suite to
        check, and one with none of the model's columns would pass as an empty answer.

        Raises:
            SourceError: naming ``where``, the missing columns and the expected ones.
        """
        problem = self.bundle.missing_columns_problem(where, columns)
        if problem is not None:
            raise SourceError(problem)

    def _run_part_widening_csv_ids(
        self,
        part: Path,
        target: Path,
        suite: CompiledSuite | None,
        before_commit: Callable[[], None],
        first_id: int | None,
        replaces_folder: bool,
        progress: Callable[[int], None] | None,
    ) -> tuple[int, int, ErrorSummary | None]:
        """``_run_part``; a CSV whose ids change type after the first block (pyarrow
        fixes a column's type there) is run again with the wider type its values need,
        text or float64, as pandas and Spark read the whole column."""
        csv_types = self._csv_types
        while True:
            counted = 0

            def counting(rows: int) -> None:
                nonlocal counted
                counted += rows
                if progress is not None:
                    progress(rows)

            try:
                return self._run_part(
                    part,
                    target,
                    suite,
                    before_commit,
                    first_id,
                    csv_types,
                    counting,
                    replaces_folder,
                )
            except SourceError as error:
                wider = error.wider
                if (
                    error.column != self._id_column
                    or wider is None
                    or csv_types.get(self._id_column) == wider
                    or part.suffix.lower() in PARQUET_SUFFIXES
                ):
                    raise
                logger.warning("%s; reading %s again with %s ids", error, part.name, wider)
                if progress is not None:
                    progress(-counted)  # the rows are counted again as they are read again
                csv_types = {**csv_types, self._id_column: wider}

    def _refuse_a_destination_of_the_other_shape(self, destination: Path) -> bool:
        """A folder input writes a folder of parts, a file input one file: a path
        already holding the other shape is refused before any work. The one exception
        is a finished folder output (``_SUCCESS``, only aeops parts) at a file input's
        path: an earlier Spark or folder-input run's, which this run replaces as the
        Spark engine replaces a file. Returns whether there is one.
        """
        if self.source.is_folder and destination.exists() and not destination.is_dir():
            raise BatchJobError(
                f"{destination} is a file, but the folder input {self.source.path} writes a "
                "folder of parts there; remove it or choose another output path"
            )
        if self.source.is_folder or not destination.is_dir():
            return False
        if not (destination / SUCCESS_MARKER).is_file():
            raise BatchJobError(
                f"{destination} is a folder with no {SUCCESS_MARKER} (an unfinished "
                f"folder-input output?), but the file input {self.source.path} writes one "
                "Parquet file there; remove it or choose another output path"
            )
        self._earlier_parts(destination, [])  # refuses a Parquet file no aeops job wrote
        quarantine = destination / "_quarantine"
        foreign = [
            path
            for path in (*destination.iterdir(), *listing(quarantine))
            if not (
                path.name == SUCCESS_MARKER
                or path == quarantine
                or written_by_aeops(path, set_aside=path.parent == quarantine)
            )
        ]
        if foreign:
            raise BatchJobError(
                f"the finished output folder {destination} also holds "
                f"{', '.join(str(p.relative_to(destination)) for p in foreign[:5])}, which no "
                f"aeops job wrote; the file input {self.source.path} would replace the folder "
                "and lose them. Move them, or write elsewhere"
            )
        return True

    def _run_part(
        self,
        part: Path,
        target: Path,
        suite: CompiledSuite | None,
        before_commit: Callable[[], None],
        first_id: int | None,
        csv_types: dict[str, pa.DataType],
        progress: Callable[[int], None],
        replaces_folder: bool = False,
    ) -> tuple[int, int, ErrorSummary | None]:
        """Read, check, answer and write one input part into ``target``; the rows
        written, the rows set aside, and for scores their summary. ``before_commit``
        runs once every batch is written, before anything is renamed into place."""
        writer: AtomicParquetWriter | None = None
        quarantine: AtomicParquetWriter | None = None
        quarantine_target = self._quarantine_target(target)
        rows = bad_rows = 0
        errors = ErrorSummary() if self.output == "scores" else None
        if not isinstance(self.bundle.predictor.inputs, TabularInputs):
            # A table's suite names a missing column itself, batch by batch.
            self.refuse_missing_inputs(str(part), self.source.columns(part))
        try:
            batches = self._frames(part, csv_types)
            for prepared in background(self._prepare(batches, part, suite, first_id or 0)):
                rejected = prepared.rejected
                if rejected is not None and rejected.num_rows:
                    if quarantine is None:
                        quarantine = AtomicParquetWriter(quarantine_target, rejected.schema)
                    quarantine.write(rejected)
                    bad_rows += rejected.num_rows
                if writer is None:
                    schema = self.output_schema(prepared.ids.type, part, first_id)
                    writer = AtomicParquetWriter(target, schema, replaces_folder)
                if prepared.n_rows:
                    answers = self._answers(prepared, writer.schema)
                    if errors is not None:
                        errors.add(
                            answers.column("reconstruction_error").to_numpy(),
                            answers.column("is_anomaly").to_numpy(zero_copy_only=False),
                        )
                    writer.write(answers)
                if prepared.recycle is not None:
                    prepared.recycle()
                rows += prepared.n_rows
                progress(prepared.n_read)
            if writer is None:  # an input with no rows still gets a (valid, empty) output
                self.refuse_missing_inputs(f"{part} (no rows)", self.source.columns(part))
                logger.warning("%s has no rows: its %s are empty", part, self.output)
                schema = self.output_schema(self._id_type(part), part, first_id)
                writer = AtomicParquetWriter(target, schema, replaces_folder)
            before_commit()
            # The set-aside rows first: a part counts as done once its output exists.
            if quarantine is not None:
                quarantine.commit()
            else:  # none this time: an earlier run's file would be wrong
                quarantine_target.unlink(missing_ok=True)
            writer.commit()
        except BaseException:
            for open_writer in (writer, quarantine):  # each one, whatever the other does
                if open_writer is not None:
                    try:
                        open_writer.abort()
                    except Exception as error:
                        logger.warning("Could not clean up %s: %s", open_writer.temp, error)
            raise
        logger.info("Wrote %d rows of %s to %s", rows, self.output, target)
        if bad_rows:
            logger.warning(
                "Set %d rows that failed the model's suite aside in %s (column aeops_failed "
                "says why)",
                bad_rows,
                quarantine_target,
            )
        return rows, bad_rows, errors


def _errors_of(part: Path) -> ErrorSummary:
    """A finished scores part's errors and flags, read back a row group at a time."""
    summary = ErrorSummary()
    columns = ["reconstruction_error", "is_anomaly"]
    for batch in open_parquet(part).iter_batches(batch_size=1 << 16, columns=columns):
        summary.add(batch.column(0).to_numpy(), batch.column(1).to_numpy(zero_copy_only=False))
    return summary
