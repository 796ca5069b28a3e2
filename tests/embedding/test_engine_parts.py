"""The local engine's parts on their own: the Arrow fast path, the Parquet reader, torch's
thread share."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from aeops.data import TabularInputs, fit_scaler
from aeops.embedding import _source as source_module
from aeops.embedding._arrow_tabular import ArrowTabularPath
from aeops.embedding._checks import CompiledSuite
from aeops.embedding._engine import _cpu_share_for_the_model
from aeops.embedding._source import WHOLE_ROW_GROUP_BYTES, parquet_batches
from aeops.models import ModelConfig, build_model
from aeops.scoring import Predictor
from aeops.validation import build_suite, suite_to_dict

COLUMNS = ("a", "b", "c")


def _predictor() -> Predictor:
    torch.manual_seed(0)
    model = build_model(ModelConfig(architecture="mlp", latent_dim=2, hidden_dims=(8,)), (3,))
    values = np.random.default_rng(0).normal(size=(50, 3))
    return Predictor(model, TabularInputs(COLUMNS), fit_scaler(values, list(COLUMNS), "robust"))


def _fast_path(frame: pd.DataFrame) -> ArrowTabularPath:
    suite = suite_to_dict(build_suite(frame, id_column="id", feature_columns=list(COLUMNS)))
    path = ArrowTabularPath.for_bundle(_predictor(), CompiledSuite(suite, {"id"}), "id")
    assert path is not None
    return path


def _frame(n: int = 20) -> pd.DataFrame:
    values = np.random.default_rng(1).normal(size=(n, 3))
    frame = pd.DataFrame(values, columns=list(COLUMNS))
    frame.insert(0, "id", np.arange(n, dtype=np.int64))
    return frame


def test_the_fast_path_gives_the_general_paths_samples_bit_for_bit() -> None:
    frame = _frame(5000)
    frame["b"] = frame["b"].astype(np.float32)
    frame["c"] = (frame["c"] * 100).round().astype(np.int32)
    path = _fast_path(frame)
    ready = path.prepare(pa.RecordBatch.from_pandas(frame, preserve_index=False), 0)
    assert ready is not None
    general = _predictor().samples(frame)
    np.testing.assert_array_equal(ready.samples, general)
    assert ready.ids.to_pylist() == frame["id"].tolist()


@pytest.mark.parametrize(
    "spoil",
    [
        lambda f: f.assign(a=f["a"].where(f.index != 3)),  # a missing value
        lambda f: f.assign(b=f["b"].where(f.index != 3, np.inf)),
        lambda f: f.assign(id=f["id"].astype(float).where(f.index != 3)),  # NaN id
        lambda f: f.assign(id=f["id"].where(f.index != 3, 0)),  # duplicated id
        lambda f: f.assign(c=f["c"].astype(str)),  # text where numbers belong
        lambda f: f.drop(columns=["c"]),
        lambda f: f.assign(a=f["a"] > 0),  # booleans are not numbers to the suite
    ],
)
def test_the_fast_path_declines_what_the_general_path_must_name(spoil: object) -> None:
    frame = _frame()
    path = _fast_path(frame)
    spoiled = spoil(frame)  # type: ignore[operator]
    assert path.prepare(pa.RecordBatch.from_pandas(spoiled, preserve_index=False), 0) is None


def test_nan_ids_are_declined_even_in_arrow_where_nan_is_not_null() -> None:
    frame = _frame()
    path = _fast_path(frame)
    ids = pa.array([0.0, float("nan")] + [float(i) for i in range(2, 20)])
    batch = pa.RecordBatch.from_pandas(frame, preserve_index=False).set_column(0, "id", ids)
    assert ids.null_count == 0
    assert path.prepare(batch, 0) is None


def test_the_model_gets_half_the_cpus_during_a_job_and_the_setting_comes_back() -> None:
    model = _predictor().model
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError, match="boom"), _cpu_share_for_the_model(model):
        assert torch.get_num_threads() <= max(1, before)
        with _cpu_share_for_the_model(model):  # a second job in the same process
            pass
        assert torch.get_num_threads() <= max(1, before)
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before


def _grouped_parquet(path: Path, group_rows: list[int], columns: int = 8) -> pa.Table:
    rng = np.random.default_rng(5)
    rows = sum(group_rows)
    table = pa.table(
        {"id": np.arange(rows)} | {f"x{i}": rng.normal(size=rows) for i in range(columns)}
    )
    with pq.ParquetWriter(path, table.schema) as writer:
        start = 0
        for n in group_rows:
            writer.write_table(table.slice(start, n))
            start += n
    return table


@pytest.mark.parametrize("whole_group_bytes", [WHOLE_ROW_GROUP_BYTES, 1])
def test_parquet_batches_are_the_files_rows_in_order_never_across_row_groups(
    tmp_path: Path, whole_group_bytes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 1: every group is "too large" and goes through pyarrow's batch iterator instead.
    monkeypatch.setattr(source_module, "WHOLE_ROW_GROUP_BYTES", whole_group_bytes)
    table = _grouped_parquet(tmp_path / "in.parquet", [1000, 7, 2500, 1])
    batches = list(parquet_batches(tmp_path / "in.parquet", 600))
    assert [b.num_rows for b in batches] == [600, 400, 7, 600, 600, 600, 600, 100, 1]
    assert pa.Table.from_batches(batches).equals(table)


def _pool_peak(script: str) -> float:
    """The peak of pyarrow's memory pool over ``script``, in a fresh process that no
    test raised: the least of three runs, since pyarrow now and then holds a few MB
    more between row groups."""
    peaks = []
    for _ in range(3):
        run = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(script)],
            capture_output=True,
            text=True,
            check=True,
        )
        peaks.append(int(run.stdout.split()[-1]))
    return min(peaks)


# Groups of 200,000 rows of an int64 id and 8 float64 columns: 14.4 MB decoded.
_GROUP_ROWS = 200_000
_GROUP_BYTES = _GROUP_ROWS * 9 * 8


def test_parquet_batches_hold_one_decoded_row_group_at_a_time(tmp_path: Path) -> None:
    # Decoding a group holds its raw pages beside its columns (random floats do not
    # compress): about two groups' worth. A reader that drops each batch before asking
    # for the next adds nothing to that (1.8 groups); holding the last group while the
    # next decodes peaked at 2.8 groups, pyarrow's iter_batches at 3.5.
    _grouped_parquet(tmp_path / "in.parquet", [_GROUP_ROWS] * 3)
    peak = _pool_peak(
        f"""
        import pyarrow as pa
        from aeops.embedding._source import parquet_batches

        batches = parquet_batches({str(tmp_path / "in.parquet")!r}, 65536)
        while (batch := next(batches, None)) is not None:
            del batch
        print(pa.default_memory_pool().max_memory())
        """
    )
    assert _GROUP_BYTES <= peak < 2.3 * _GROUP_BYTES


def test_a_job_frees_each_row_group_before_reading_the_next(tmp_path: Path) -> None:
    # The engine's reader and prepare stages drop each batch before asking for the
    # next; the model's samples and answers are copies, so only the ids (one column)
    # outlive a group. 2.0 groups; 2.9 with either stage holding its last batch.
    _grouped_parquet(tmp_path / "in.parquet", [_GROUP_ROWS] * 4)
    peak = _pool_peak(
        f"""
        from pathlib import Path

        import numpy as np
        import pyarrow as pa
        import torch

        from aeops.bundle import BundleSpec, LoadedBundle
        from aeops.data import TabularInputs, fit_scaler
        from aeops.embedding import EmbedJob, TableSource
        from aeops.models import ModelConfig, build_model
        from aeops.scoring import Predictor

        columns = [f"x{{i}}" for i in range(8)]
        model = build_model(ModelConfig(architecture="mlp", latent_dim=2), (8,))
        scaler = fit_scaler(np.random.default_rng(0).normal(size=(50, 8)), columns, "robust")
        predictor = Predictor(model, TabularInputs(tuple(columns)), scaler)
        spec = BundleSpec(id_column="id", data={{"kind": "tabular"}})
        bundle = LoadedBundle(predictor, spec, {{"model_uri": "test"}})
        job = EmbedJob(TableSource(Path({str(tmp_path / "in.parquet")!r})), bundle)
        job.run(Path({str(tmp_path / "out.parquet")!r}))
        print(pa.default_memory_pool().max_memory())
        """
    )
    assert _GROUP_BYTES <= peak < 2.5 * _GROUP_BYTES
