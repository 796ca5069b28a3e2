"""The local engine's parts on their own: the Arrow fast path, the Parquet reader, torch's
thread share."""

from __future__ import annotations

import json
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
from aeops.embedding import _threads
from aeops.embedding._arrow_tabular import ArrowTabularPath, _Buffers, _unique
from aeops.embedding._checks import CompiledSuite
from aeops.embedding._source import WHOLE_ROW_GROUP_BYTES, parquet_batches
from aeops.embedding._threads import cpu_share_for_the_model
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
    ("ids", "dtype"), [([5, 3, 5], np.uint32), ([1, 100, -100, 1], np.int8), ([7, 7], np.int64)]
)
def test_repeated_ids_are_found_whatever_their_integer_type(ids: list[int], dtype: type) -> None:
    assert not _unique(np.array(ids, dtype=dtype))
    assert _unique(np.array(sorted(set(ids)), dtype=dtype))
    assert _unique(np.array(sorted(set(ids), reverse=True), dtype=dtype))


def test_sample_buffers_come_back_by_shape_and_layout_and_keep_a_few() -> None:
    buffers = _Buffers(keep=2)
    first = buffers.take((4, 3), "C")
    buffers.give(first)
    assert buffers.take((4, 3), "F") is not first  # another layout is another list
    assert buffers.take((4, 3), "C") is first
    assert buffers.take((5, 3), "C").shape == (5, 3)
    many = [buffers.take((4, 3), "C") for _ in range(3)]
    for array in many:
        buffers.give(array)
    kept = {id(buffers.take((4, 3), "C")) for _ in range(3)}
    assert len(kept & {id(a) for a in many}) == 2  # at most ``keep`` are kept
    assert buffers.allocated == 7  # the last take found none left


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


def test_the_model_gets_half_the_cpus_during_a_job_and_the_setting_comes_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = _predictor().model
    monkeypatch.setattr(_threads, "usable_cpus", lambda: 8)
    original = torch.get_num_threads()
    torch.set_num_threads(8)
    try:
        with pytest.raises(RuntimeError, match="boom"), cpu_share_for_the_model(model):
            assert torch.get_num_threads() == 4
            with cpu_share_for_the_model(model):  # a second job in the same process
                assert torch.get_num_threads() == 4
            assert torch.get_num_threads() == 4  # the first job still runs
            raise RuntimeError("boom")
        assert torch.get_num_threads() == 8
        torch.set_num_threads(2)  # never more than the setting it had
        with cpu_share_for_the_model(model):
            assert torch.get_num_threads() == 2
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(original)


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


def test_a_row_group_of_images_is_read_in_batches_not_decoded_whole(tmp_path: Path) -> None:
    # Decoding a whole group of lists took over 20 times its size in pyarrow's pool:
    # 4 GB and more for scoring a 93 MiB file of 64 x 64 RGB images.
    rows, width = 2000, 12288
    pixels = np.random.default_rng(0).integers(0, 255, rows * width, dtype=np.uint8)
    offsets = pa.array(np.arange(0, rows * width + 1, width, dtype=np.int32))
    images = pa.ListArray.from_arrays(offsets, pa.array(pixels))
    table = pa.table({"id": pa.array(np.arange(rows)), "image": images})
    pq.write_table(table, tmp_path / "images.parquet", row_group_size=rows)
    script = f"""
        import pyarrow as pa
        from aeops.embedding._source import parquet_batches

        read = [b.num_rows for b in parquet_batches({str(tmp_path / "images.parquet")!r}, 100)]
        assert read == [100] * 20, read
        print(pa.default_memory_pool().max_memory())
    """
    run = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    assert int(run.stdout.split()[-1]) < 3 * rows * width


def _held_at_each_group_read(script: str) -> list[int]:
    """What pyarrow's memory pool holds as each row group after the first starts to
    decode, beyond what it held when the first did, over ``script`` run in a fresh
    process (in a test worker, threads that other tests left could allocate meanwhile).
    """
    recorder = """
        import json

        import pyarrow as pa
        import pyarrow.parquet as pq

        held, at_first = [], []
        read = pq.ParquetFile.read_row_group

        def recorded(self, *args, **kwargs):
            allocated = pa.default_memory_pool().bytes_allocated()
            if at_first:
                held.append(allocated - at_first[0])
            else:
                at_first.append(allocated)
            return read(self, *args, **kwargs)

        pq.ParquetFile.read_row_group = recorded
    """
    code = textwrap.dedent(recorder) + textwrap.dedent(script) + "\nprint(json.dumps(held))\n"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return list(json.loads(run.stdout.split("\n")[-2]))


# Groups of 200,000 rows of an int64 id and 8 float64 columns: 14.4 MB decoded.
_GROUP_ROWS = 200_000
_GROUP_BYTES = _GROUP_ROWS * 9 * 8


def test_parquet_batches_free_each_row_group_before_reading_the_next(tmp_path: Path) -> None:
    # A slice kept alive (by iterating the group's list of batches instead of popping
    # it) holds the whole group while the next one decodes: a group's worth at every
    # read. Counted there rather than as the peak, which pyarrow's decoding threads
    # move from run to run (1.8 to 2.4 groups for this reader, 2.8 holding a group).
    # Those threads now and then still hold the last group's pages as the next read
    # starts, so the least over the reads is what tells.
    _grouped_parquet(tmp_path / "in.parquet", [_GROUP_ROWS] * 5)
    held = _held_at_each_group_read(
        f"""
        from aeops.embedding._source import parquet_batches

        batches = parquet_batches({str(tmp_path / "in.parquet")!r}, 65536)
        while (batch := next(batches, None)) is not None:
            del batch
        """
    )
    assert len(held) == 4
    assert min(held) < 0.1 * _GROUP_BYTES, held


def test_a_job_frees_each_row_group_before_reading_the_next(tmp_path: Path) -> None:
    # The engine's reader and prepare stages drop each batch before asking for the
    # next; the model's samples and answers are copies, so only the ids (one column of
    # nine) of batches still queued outlive a group. Either stage holding its last
    # batch would keep a whole group at every read (the least over them, as above).
    _grouped_parquet(tmp_path / "in.parquet", [_GROUP_ROWS] * 5)
    held = _held_at_each_group_read(
        f"""
        from pathlib import Path

        import numpy as np

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
        """
    )
    assert len(held) == 4
    assert min(held) < 0.5 * _GROUP_BYTES, held


def test_hidden_files_in_an_input_folder_are_not_parts(tmp_path: Path) -> None:
    _frame().to_parquet(tmp_path / "a.parquet")
    (tmp_path / "._a.parquet").write_bytes(b"\x00\x05\x16\x07 Mac OS X")
    (tmp_path / "_SUCCESS.csv").write_text("")
    assert [p.name for p in source_module.TableSource(tmp_path).parts()] == ["a.parquet"]


def test_a_csv_header_with_a_byte_order_mark_is_read_as_pyarrow_reads_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "a.csv"
    _frame(7).to_csv(path, index=False, encoding="utf-8-sig")  # as Excel writes CSV
    source = source_module.TableSource(path)
    assert source.has_column(path, "id")
    assert source.count_rows(path) == 7
