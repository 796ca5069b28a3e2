"""The fast path for tabular bundles: Arrow columns straight to one float matrix.

A clean batch (the common case) needs no pandas: its feature columns are copied once
into a float64 matrix, the suite's checks run on that matrix as whole-array bound
comparisons, and the same matrix is scaled into the model's samples. A batch that
fails anything here is handed back to the general path, which names every failure
(or quarantines the bad rows) exactly as before; so this path only ever accepts
batches the general path would accept, with identical samples.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from aeops.data import TabularInputs
from aeops.embedding._checks import CompiledSuite
from aeops.scoring import Predictor

# The model computes in float32: this path takes no value beyond its range (the
# suite's FINITE_LIMIT bounds refuse them on the general path too).
_FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class ArrowBatch:
    """A batch made ready for the model without pandas; give its samples back with
    :meth:`ArrowTabularPath.recycle` once the model is done with them."""

    n_rows: int
    ids: pa.Array
    samples: np.ndarray


class _Buffers:
    """float32 sample arrays used again batch after batch, by shape and layout.

    A 16 MB array allocated afresh for every batch came back from the system as
    new pages each time (glibc hands a thread's freed blocks back): clearing them
    took the reader thread 8 of its 15 ms of CPU per 65,536 rows x 64 columns, on
    the critical path. Arrays are taken in the reader thread and given back from the
    model's, so a lock guards the free lists; each keeps at most ``keep`` arrays.
    """

    def __init__(self, keep: int = 4) -> None:
        self._free: defaultdict[tuple[tuple[int, ...], str], list[np.ndarray]]
        self._free = defaultdict(list)
        self._keep = keep
        self._lock = threading.Lock()
        self.allocated = 0  # arrays made, rather than taken back

    def take(self, shape: tuple[int, ...], order: str) -> np.ndarray:
        """A float32 array of ``shape`` in ``order`` ("C" or "F"); its values are stale."""
        with self._lock:
            free = self._free.get((shape, order))
            if free:
                return free.pop()
            self.allocated += 1
        return np.empty(shape, dtype=np.float32, order=order)  # type: ignore[call-overload]

    def give(self, array: np.ndarray) -> None:
        """Take ``array`` back; the caller must hold no other reference to its memory."""
        order = "C" if array.flags.c_contiguous else "F"
        with self._lock:
            free = self._free[(array.shape, order)]
            if len(free) < self._keep:
                free.append(array)


class ArrowTabularPath:
    """Checks and scales clean record batches for a tabular bundle.

    Build it with :meth:`for_bundle`, which returns None when the suite holds a check
    this path cannot mirror (the general path then handles every batch).
    """

    def __init__(
        self,
        predictor: Predictor,
        columns: tuple[str, ...],
        low: np.ndarray,
        high: np.ndarray,
        allowed_types: list[set[str] | None],
        id_column: str,
        id_unique: bool,
    ) -> None:
        """Use :meth:`for_bundle`."""
        self._predictor = predictor
        self._columns = columns
        self._low = low
        self._high = high
        self._allowed_types = allowed_types
        self._id_column = id_column
        self._id_unique = id_unique
        self._buffers = _Buffers()

    @classmethod
    def for_bundle(
        cls, predictor: Predictor, suite: CompiledSuite | None, id_column: str
    ) -> ArrowTabularPath | None:
        """The fast path for ``predictor``'s inputs under ``suite``, when it can mirror it."""
        if not isinstance(predictor.inputs, TabularInputs):
            return None
        columns = predictor.inputs.columns
        low = np.full(len(columns), -_FLOAT32_MAX)
        high = np.full(len(columns), _FLOAT32_MAX)
        allowed: list[set[str] | None] = [None] * len(columns)
        id_unique = False
        if suite is not None:
            plan = suite.matrix_plan(columns, id_column)
            if plan is None:
                return None
            low = np.maximum(low, plan.low)
            high = np.minimum(high, plan.high)
            allowed = plan.allowed_types
            id_unique = plan.id_unique
        return cls(predictor, columns, low, high, allowed, id_column, id_unique)

    def prepare(self, batch: pa.RecordBatch, offset: int) -> ArrowBatch | None:
        """Samples and ids of a clean ``batch``; None sends it to the general path.

        Each feature column is checked and scaled on its own, where it lies in memory
        (the scaler's own column-wise arithmetic, so the samples are bit for bit those
        of the general path), then laid out as the model reads them fastest, here in
        the reader thread rather than on the model's. Both go into reused arrays.
        """
        columns = self._numeric_columns(batch)
        ids = None if columns is None else self._ids(batch, offset)
        if columns is None or ids is None:
            return None
        for index, column in enumerate(columns):
            if not self._within_bounds(index, column):
                return None
        shape = (batch.num_rows, len(columns))
        scaled = self._predictor.scaler.transform_columns(columns, self._buffers.take(shape, "F"))
        if not self._predictor.wants_row_major(scaled):
            return ArrowBatch(batch.num_rows, ids, scaled)
        samples = self._buffers.take(shape, "C")
        self._predictor.model_layout(scaled, samples)  # the pooled array itself goes on
        self._buffers.give(scaled)
        return ArrowBatch(batch.num_rows, ids, samples)

    def recycle(self, ready: ArrowBatch) -> None:
        """Take back the samples of a batch from :meth:`prepare` once the model has
        answered it: nothing may use them after this."""
        self._buffers.give(ready.samples)

    def _within_bounds(self, index: int, column: np.ndarray) -> bool:
        """No NaN, and every value within the feature's bounds."""
        low, high = self._low[index], self._high[index]
        if column.size == 0:
            return True
        if column.dtype.kind in "iu":  # no NaN; only explicit bounds can fail
            if low <= -_FLOAT32_MAX and high >= _FLOAT32_MAX:
                return True
            return bool(column.min() >= low and column.max() <= high)
        if column.dtype == np.float32 and low <= -_FLOAT32_MAX and high >= _FLOAT32_MAX:
            return bool(np.isfinite(column).all())  # a finite float32 is within its range
        # In float64, as the general path compares; NaN fails both comparisons, so one
        # pass covers not-null, finite and bounds.
        values = column.astype(np.float64, copy=False)
        return bool(((values >= low) & (values <= high)).all())

    def _numeric_columns(self, batch: pa.RecordBatch) -> list[np.ndarray] | None:
        """The feature columns as numpy views, or None if any is absent, non-numeric,
        of a type the suite does not allow, or holds a null."""
        schema = batch.schema
        columns = []
        for index, name in enumerate(self._columns):
            position = schema.get_field_index(name)
            if position < 0:
                return None
            column = batch.column(position)
            kind = column.type
            if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
                return None
            allowed = self._allowed_types[index]
            if allowed is not None and np.dtype(kind.to_pandas_dtype()).name not in allowed:
                return None
            if column.null_count:
                return None
            columns.append(column.to_numpy(zero_copy_only=False))
        return columns

    def _ids(self, batch: pa.RecordBatch, offset: int) -> pa.Array | None:
        position = batch.schema.get_field_index(self._id_column)
        if position < 0:
            return pa.array(np.arange(offset, offset + batch.num_rows, dtype=np.int64))
        ids = batch.column(position)
        if ids.null_count:
            return None
        if pa.types.is_floating(ids.type) and pc.any(pc.is_nan(ids)).as_py():
            return None  # NaN is not an Arrow null, but the suite's not-null check fails it
        if self._id_unique and not _unique(ids.to_numpy(zero_copy_only=False)):
            return None
        return ids


def _unique(values: np.ndarray) -> bool:
    """Whether no value repeats; increasing ids (the usual case) need no hash table.

    Neighbours are compared, not subtracted: a difference of unsigned or narrow
    integers wraps around, and ``[5, 3, 5]`` would look increasing.
    """
    if values.dtype.kind in "iu" and values.size > 1 and bool((values[1:] > values[:-1]).all()):
        return True
    return bool(pd.Index(values).is_unique)
