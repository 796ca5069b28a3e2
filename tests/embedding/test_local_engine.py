from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from kedro.io import DatasetError

from aeops.bundle import LoadedBundle
from aeops.data import InputSchemaError
from aeops.demo_data import make_timeseries_demo
from aeops.embedding import (
    SUCCESS_MARKER,
    BatchValidationError,
    EmbedJob,
    SourceError,
    TableSource,
    _engine,
)
from aeops.embedding._arrow_tabular import ArrowTabularPath
from aeops.embedding._checks import CompiledSuite
from aeops.embedding._output import WRITER, AtomicParquetWriter
from aeops.embedding._summary import RELATIVE_ACCURACY, REPORTED_QUANTILES
from aeops.io import TableSourceDataset
from aeops.pipelines.evaluate.nodes import evaluate_registered_model
from aeops.scoring import Threshold
from aeops.serving import ModelNotFoundError, load_registered_bundle
from aeops.validation import FINITE_LIMIT, NUMERIC_DTYPE_NAMES, build_suite, suite_to_dict

from .conftest import flat_image_rows, image_rows, tabular_rows


def _job(store: dict[str, Any], kind: str, source: Path, **options: Any) -> EmbedJob:
    bundle = load_registered_bundle(store["models"][kind])
    return EmbedJob(source=TableSource(source), bundle=bundle, **options)


def _served(store: dict[str, Any], kind: str, frame: pd.DataFrame) -> pd.DataFrame:
    return mlflow.pyfunc.load_model(store["models"][kind]).predict(frame)


def test_a_score_job_reports_its_alert_rate_and_error_quantiles(
    store: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rows = tabular_rows(2000, seed=3)
    rows.loc[:799, "f2"] += 25.0  # 800 rows far from what the model trained on
    source = tmp_path / "folder"
    source.mkdir()
    rows.iloc[:1500].to_parquet(source / "a.parquet")
    rows.iloc[1500:].to_parquet(source / "b.parquet")
    with caplog.at_level("INFO", logger="aeops.embedding"):
        report = _job(store, "tabular", source, output="scores", batch_rows=256).run(
            tmp_path / "scores"
        )
    scores = pd.read_parquet(tmp_path / "scores")
    errors, flags = scores["reconstruction_error"].to_numpy(), scores["is_anomaly"].to_numpy()
    assert report.errors is not None
    assert (report.errors.rows, report.errors.flagged) == (2000, int(flags.sum()))
    metrics = report.errors.metrics()
    assert metrics["alert_rate"] == flags.mean()
    assert metrics["error_max"] == errors.max()
    for name, q in REPORTED_QUANTILES.items():
        exact = np.quantile(errors, q, method="lower")
        assert metrics[f"error_{name}"] == pytest.approx(exact, rel=RELATIVE_ACCURACY)
    # The log says how many were flagged beside the validation rows' share, and warns:
    # the shifted rows make the rate far above it.
    threshold = load_registered_bundle(store["models"]["tabular"]).predictor.threshold
    assert threshold is not None
    validation_rate = threshold.diagnostics["validation_alert_rate"]
    (record,) = [r for r in caplog.records if r.getMessage().startswith("Flagged")]
    assert record.levelname == "WARNING"
    assert record.getMessage().startswith(
        f"Flagged {int(flags.sum()):,} of 2,000 rows as anomalies ({flags.mean():.2%}); "
        f"the threshold flagged {validation_rate:.2%} of the validation rows"
    )
    # A rerun after a crash scores the missing part and reads the finished one back:
    # its rates and quantiles are the whole output's, the same as the first run's.
    (tmp_path / "scores" / "b.parquet").unlink()
    rerun = _job(store, "tabular", source, output="scores").run(tmp_path / "scores")
    assert (rerun.parts_written, rerun.parts_skipped) == (1, 1)
    assert (rerun.rows, rerun.skipped_rows) == (500, 1500)
    assert rerun.errors is not None
    assert (rerun.errors.rows, rerun.errors.flagged) == (2000, int(flags.sum()))
    np.testing.assert_array_equal(rerun.errors.counts, report.errors.counts)
    assert rerun.errors.metrics() == metrics
    skipped_all = _job(store, "tabular", source, output="scores").run(tmp_path / "scores")
    assert (skipped_all.rows, skipped_all.skipped_rows, skipped_all.parts_skipped) == (0, 2000, 2)
    assert skipped_all.errors is not None and skipped_all.errors.metrics() == metrics
    # Embeddings have no errors to summarise.
    embedded = _job(store, "tabular", source).run(tmp_path / "embeddings")
    assert embedded.errors is None


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_tabular_embeddings_and_scores_equal_the_bundles_predict(
    store: dict[str, Any], tmp_path: Path, suffix: str
) -> None:
    rows = tabular_rows(1000, seed=1)
    source = tmp_path / f"in{suffix}"
    rows.to_parquet(source) if suffix == ".parquet" else rows.to_csv(source, index=False)
    _job(store, "tabular", source, output="embeddings", batch_rows=128).run(tmp_path / "e.parquet")
    _job(store, "tabular", source, output="scores", batch_rows=300).run(tmp_path / "s.parquet")
    embeddings = pq.read_table(tmp_path / "e.parquet")
    scores = pd.read_parquet(tmp_path / "s.parquet")
    served = _served(store, "tabular", rows)
    assert embeddings.column("id").to_pylist() == rows["id"].tolist()  # same rows, same order
    assert embeddings.schema.field("embedding").type == pa.list_(pa.float32(), 3)
    np.testing.assert_allclose(
        np.stack(embeddings.column("embedding").to_pylist()),
        np.stack(served["embedding"]),
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        scores["reconstruction_error"], served["reconstruction_error"], rtol=1e-6
    )
    assert (scores["is_anomaly"] == served["is_anomaly"]).all()
    metadata = {k.decode(): v.decode() for k, v in embeddings.schema.metadata.items()}
    assert metadata["aeops.model_name"] == "embed-tabular"
    assert metadata["aeops.model_version"] == "1"
    # The job loaded @champion; its output names the version, which no alias moves.
    assert metadata["aeops.model_uri"] == "models:/embed-tabular/1"
    assert metadata["aeops.latent_dim"] == "3"
    assert float(metadata["aeops.threshold"]) > 0
    assert len(metadata["aeops.run_id"]) == 32
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left


def test_series_and_images_equal_the_bundles_predict(store: dict[str, Any], tmp_path: Path) -> None:
    series = make_timeseries_demo(n_steps=300).drop(columns=["label"])
    series.to_parquet(tmp_path / "series.parquet")
    _job(store, "timeseries", tmp_path / "series.parquet", output="scores", batch_rows=64).run(
        tmp_path / "series_scores.parquet"
    )
    scored = pd.read_parquet(tmp_path / "series_scores.parquet")
    assert scored["id"].tolist() == list(range(300))  # row positions, every time step
    np.testing.assert_allclose(
        scored["reconstruction_error"],
        _served(store, "timeseries", series)["reconstruction_error"],
        rtol=1e-6,
    )
    images = flat_image_rows()
    images.to_parquet(tmp_path / "images.parquet")
    _job(store, "image", tmp_path / "images.parquet", batch_rows=50).run(tmp_path / "img.parquet")
    embedded = pq.read_table(tmp_path / "img.parquet")
    served = _served(store, "image", images)
    np.testing.assert_allclose(
        np.stack(embedded.column("embedding").to_pylist()), np.stack(served["embedding"]), rtol=1e-5
    )


def test_bad_batch_stops_with_its_rows_and_writes_nothing(
    store: dict[str, Any], tmp_path: Path
) -> None:
    rows = tabular_rows(500)
    rows.loc[260, "f2"] = np.nan
    rows.to_parquet(tmp_path / "in.parquet")
    target = tmp_path / "out.parquet"
    with pytest.raises(BatchValidationError, match=r"(?s)rows 256-383 .*f2.*sample rows \[260\]"):
        _job(store, "tabular", tmp_path / "in.parquet", batch_rows=128).run(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.parquet"]


def test_quarantine_policy_sets_bad_rows_aside(store: dict[str, Any], tmp_path: Path) -> None:
    rows = tabular_rows(400)
    rows.loc[[5, 300], "f0"] = np.inf
    rows.loc[[6, 300], "f1"] = np.nan
    rows.to_parquet(tmp_path / "in.parquet")
    report = _job(
        store,
        "tabular",
        tmp_path / "in.parquet",
        output="scores",
        invalid_rows="quarantine",
        batch_rows=100,
    ).run(tmp_path / "out.parquet")
    assert (report.rows, report.quarantined_rows) == (397, 3)
    assert len(pd.read_parquet(tmp_path / "out.parquet")) == 397
    quarantined = pd.read_parquet(tmp_path / "out.quarantine.parquet")
    assert quarantined["id"].tolist() == rows["id"].iloc[[5, 6, 300]].tolist()
    # Each row says what it did wrong, not what its whole batch did.
    inf_only, nan_only, both = quarantined["aeops_failed"]
    assert "'f0'" in inf_only and "'f1'" not in inf_only
    assert "'f1'" in nan_only and "'f0'" not in nan_only and "null" in nan_only
    assert "'f0'" in both and "'f1'" in both
    assert "rows fail" not in both and "sample" not in both


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda f: f.drop(columns=["f3"]),
            r"expect_column_to_exist \(column 'f3'\): column missing",
        ),
        (lambda f: f.assign(f1=f["f1"].astype(str)), r"column 'f1'\): dtype (str|object)"),
    ],
)
def test_missing_or_mistyped_columns_fail_even_with_quarantine(
    store: dict[str, Any], tmp_path: Path, change: Any, message: str
) -> None:
    change(tabular_rows(50)).to_parquet(tmp_path / "in.parquet")
    job = _job(store, "tabular", tmp_path / "in.parquet", invalid_rows="quarantine")
    with pytest.raises(BatchValidationError, match=message):
        job.run(tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()


def test_a_model_uri_that_does_not_exist_is_named(store: dict[str, Any]) -> None:
    with pytest.raises(ModelNotFoundError, match=r"models:/no-such-model@champion' does not exist"):
        load_registered_bundle("models:/no-such-model@champion")


def _parts(folder: Path, n_parts: int, rows_per_part: int) -> set[int]:
    folder.mkdir()
    ids: set[int] = set()
    for part in range(n_parts):
        frame = tabular_rows(rows_per_part, seed=part)
        frame.to_parquet(folder / f"part-{part:03d}.parquet")
        ids |= set(frame["id"])
    return ids


def test_a_folder_of_parts_becomes_a_folder_of_outputs(
    store: dict[str, Any], tmp_path: Path
) -> None:
    ids = _parts(tmp_path / "in", 3, 200)
    report = _job(store, "tabular", tmp_path / "in").run(tmp_path / "out")
    assert (report.parts_written, report.rows) == (3, 600)
    assert (tmp_path / "out" / SUCCESS_MARKER).exists()
    assert set(pd.read_parquet(tmp_path / "out")["id"]) == ids
    again = _job(store, "tabular", tmp_path / "in").run(tmp_path / "out")
    assert (again.parts_written, again.parts_skipped) == (0, 3)


def test_a_killed_job_resumes_without_duplicating_or_losing_rows(
    store: dict[str, Any], tmp_path: Path
) -> None:
    ids = _parts(tmp_path / "in", 20, 3000)
    out = tmp_path / "out"
    script = textwrap.dedent(
        f"""
        import mlflow
        from pathlib import Path
        from aeops.embedding import EmbedJob, TableSource
        from aeops.serving import load_registered_bundle
        mlflow.set_tracking_uri({store["uri"]!r}); mlflow.set_registry_uri({store["uri"]!r})
        bundle = load_registered_bundle({store["models"]["tabular"]!r})
        source = TableSource(Path({str(tmp_path / "in")!r}))
        EmbedJob(source, bundle, batch_rows=200).run(Path({str(out)!r}))
        """
    )
    process = subprocess.Popen([sys.executable, "-c", script], cwd=store["root"])
    deadline = time.monotonic() + 120
    while not (out.exists() and any(out.glob("part-*.parquet"))):
        assert process.poll() is None, "the job ended before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    process.kill()
    process.wait()
    finished = sorted(p.name for p in out.glob("part-*.parquet"))
    assert 0 < len(finished) < 20 and not (out / SUCCESS_MARKER).exists()
    report = _job(store, "tabular", tmp_path / "in").run(out)
    assert report.parts_skipped == len(finished)
    result = pd.read_parquet(out)
    assert len(result) == len(ids) == result["id"].nunique()
    assert set(result["id"]) == ids


@pytest.mark.parametrize("output", ["embeddings", "scores"])
def test_clean_tabular_batches_skip_pandas_and_match_the_general_path(
    store: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, output: str
) -> None:
    rows = tabular_rows(700, seed=3)
    rows["f2"] = rows["f2"].astype(np.float32)  # mixed widths, as real files have
    rows.to_parquet(tmp_path / "in.parquet")
    fast = tmp_path / "fast.parquet"
    general = tmp_path / "general.parquet"
    with monkeypatch.context() as patch:  # a clean input never needs the general path
        patch.setattr(EmbedJob, "_checked", _refuse)
        _job(store, "tabular", tmp_path / "in.parquet", output=output, batch_rows=128).run(fast)
    with monkeypatch.context() as patch:
        patch.setattr(ArrowTabularPath, "for_bundle", classmethod(lambda *args: None))
        _job(store, "tabular", tmp_path / "in.parquet", output=output, batch_rows=128).run(general)
    assert pq.read_table(fast).equals(pq.read_table(general))
    assert pq.read_schema(fast).metadata == pq.read_schema(general).metadata


def test_float32_parquet_gets_the_served_models_numbers_bit_for_bit(
    store: dict[str, Any], tmp_path: Path
) -> None:
    rows = tabular_rows(900, seed=6)
    features = [c for c in rows.columns if c != "id"]
    rows[features] = rows[features].astype(np.float32)  # the served model widens them
    rows.to_parquet(tmp_path / "in.parquet")
    for output in ("embeddings", "scores"):
        job = _job(store, "tabular", tmp_path / "in.parquet", output=output, batch_rows=256)
        job.run(tmp_path / f"{output}.parquet")
    served = _served(store, "tabular", rows)
    embeddings = pq.read_table(tmp_path / "embeddings.parquet")["embedding"].to_pylist()
    np.testing.assert_array_equal(
        np.stack(embeddings).astype(np.float32), np.stack(served["embedding"])
    )
    scores = pd.read_parquet(tmp_path / "scores.parquet")
    np.testing.assert_array_equal(scores["reconstruction_error"], served["reconstruction_error"])
    np.testing.assert_array_equal(scores["is_anomaly"], served["is_anomaly"])


def test_the_arrow_path_reuses_its_sample_arrays_batch_after_batch(
    store: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = tabular_rows(3850, seed=5)  # 30 batches of 128 rows and one of 10
    rows.to_parquet(tmp_path / "in.parquet")
    made: list[ArrowTabularPath] = []
    for_bundle = ArrowTabularPath.for_bundle.__func__  # type: ignore[attr-defined]

    def recorded(cls: type[ArrowTabularPath], *args: Any) -> ArrowTabularPath | None:
        path = for_bundle(cls, *args)
        made.append(path)
        return path

    monkeypatch.setattr(ArrowTabularPath, "for_bundle", classmethod(recorded))
    out = tmp_path / "out.parquet"
    _job(store, "tabular", tmp_path / "in.parquet", output="embeddings", batch_rows=128).run(out)
    # At most the arrays in flight (the reader's, two queued, the model's) per shape.
    (path,) = made
    assert 0 < path._buffers.allocated <= 10
    served = _served(store, "tabular", rows)
    np.testing.assert_array_equal(
        np.stack(pq.read_table(out)["embedding"].to_pylist()), np.stack(served["embedding"])
    )


def _refuse(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("a clean batch went through pandas")


def test_batches_the_arrow_path_declines_get_the_general_paths_message(
    store: dict[str, Any], tmp_path: Path
) -> None:
    rows = tabular_rows(300)
    rows.loc[250, "f4"] = 1e39  # beyond float32: refused, and named, by the general path
    rows.to_parquet(tmp_path / "in.parquet")
    job = _job(store, "tabular", tmp_path / "in.parquet", output="embeddings", batch_rows=100)
    with pytest.raises(BatchValidationError, match=r"(?s)rows 200-299 .*column 'f4'.*1e\+39"):
        job.run(tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()


def test_the_matrix_plan_mirrors_the_suites_bounds_types_and_id_checks() -> None:
    frame = tabular_rows(50)
    suite = suite_to_dict(
        build_suite(
            frame,
            id_column="id",
            feature_columns=["f0", "f1"],
            bounds={"f1": (-3.0, None)},
        )
    )
    plan = CompiledSuite(suite, {"id"}).matrix_plan(("f0", "f1"), "id")
    assert plan is not None
    assert plan.low.tolist() == [-FINITE_LIMIT, -3.0]
    assert plan.high.tolist() == [FINITE_LIMIT, FINITE_LIMIT]
    assert plan.allowed_types == [set(NUMERIC_DTYPE_NAMES)] * 2
    assert plan.id_unique
    # A check on a column the matrix does not hold: only the general path can run it.
    assert CompiledSuite(suite, {"id"}).matrix_plan(("f0",), "id") is None


def test_ids_keep_their_input_type_when_batches_take_different_paths(
    store: dict[str, Any], tmp_path: Path
) -> None:
    rows = tabular_rows(400)
    ids = pa.array([None if i == 5 else int(v) for i, v in enumerate(rows["id"])], pa.int64())
    table = pa.Table.from_pandas(rows.drop(columns=["id"]), preserve_index=False)
    pq.write_table(table.add_column(0, "id", ids), tmp_path / "in.parquet")
    job = _job(
        store,
        "tabular",
        tmp_path / "in.parquet",
        output="embeddings",
        invalid_rows="quarantine",
        batch_rows=100,  # the first batch (a null id) goes through pandas, the rest do not
    )
    assert job.run(tmp_path / "out.parquet").quarantined_rows == 1
    written = pq.read_table(tmp_path / "out.parquet")
    assert written.schema.field("id").type == pa.int64()
    assert written.column("id").to_pylist() == [v for i, v in enumerate(ids.to_pylist()) if i != 5]


def test_quarantine_keeps_large_ids_and_one_schema_across_batches(
    store: dict[str, Any], tmp_path: Path
) -> None:
    # Batch 0 sets aside a NaN feature, batch 1 a null id: through pandas the second
    # came out with float ids and another schema, which failed the quarantine writer,
    # and ids above 2**53 changed on the way.
    rows = tabular_rows(200)
    big = [2**62 + i for i in range(200)]
    ids = pa.array([None if i == 150 else v for i, v in enumerate(big)], pa.int64())
    features = rows.drop(columns=["id"])
    features.loc[5, "f1"] = np.nan
    table = pa.Table.from_pandas(features, preserve_index=False).add_column(0, "id", ids)
    pq.write_table(table, tmp_path / "in.parquet")
    job = _job(store, "tabular", tmp_path / "in.parquet", invalid_rows="quarantine", batch_rows=100)
    assert job.run(tmp_path / "out.parquet").quarantined_rows == 2
    written = pq.read_table(tmp_path / "out.parquet")
    assert written.column("id").to_pylist() == [v for i, v in enumerate(big) if i not in (5, 150)]
    set_aside = pq.read_table(tmp_path / "out.quarantine.parquet")
    assert set_aside.schema.field("id").type == pa.int64()
    assert set_aside.column("id").to_pylist() == [big[5], None]
    assert set_aside.schema.names == [*table.schema.names, "aeops_failed"]


def test_two_parts_that_would_share_an_output_are_refused(
    store: dict[str, Any], tmp_path: Path
) -> None:
    (tmp_path / "in").mkdir()
    tabular_rows(10, seed=1).to_parquet(tmp_path / "in" / "a.parquet")
    _job(store, "tabular", tmp_path / "in").run(tmp_path / "out")
    before = (tmp_path / "out" / "a.parquet").read_bytes()
    tabular_rows(10, seed=0).to_csv(tmp_path / "in" / "a.csv", index=False)
    with pytest.raises(ValueError, match=r"a.csv and a.parquet .* both be written to a.parquet"):
        _job(store, "tabular", tmp_path / "in").run(tmp_path / "out")
    # Refused before anything moved: the finished output is still whole and marked so.
    assert (tmp_path / "out" / "a.parquet").read_bytes() == before
    assert (tmp_path / "out" / SUCCESS_MARKER).exists()


def test_a_rerun_drops_the_outputs_of_input_parts_that_are_gone(
    store: dict[str, Any], tmp_path: Path
) -> None:
    ids = _parts(tmp_path / "in", 2, 50)
    out = tmp_path / "out"
    _job(store, "tabular", tmp_path / "in").run(out)
    (tmp_path / "in" / "part-001.parquet").rename(tmp_path / "in" / "part-009.parquet")
    report = _job(store, "tabular", tmp_path / "in").run(out)
    assert (report.parts_written, report.parts_skipped) == (1, 1)
    assert sorted(p.name for p in out.glob("*.parquet")) == [
        "part-000.parquet",
        "part-009.parquet",
    ]
    assert sorted(pd.read_parquet(out)["id"]) == sorted(ids)  # every row once


def test_a_folder_output_holds_this_inputs_rows_only(store: dict[str, Any], tmp_path: Path) -> None:
    ids = _parts(tmp_path / "in", 2, 50)
    (tmp_path / "other").mkdir()
    tabular_rows(10, seed=5).to_parquet(tmp_path / "other" / "x.parquet")
    out = tmp_path / "out"
    _job(store, "tabular", tmp_path / "other").run(out)
    _job(store, "tabular", tmp_path / "in").run(out)  # another input folder's part goes
    assert sorted(p.name for p in out.glob("*.parquet")) == [
        "part-000.parquet",
        "part-001.parquet",
    ]
    assert sorted(pd.read_parquet(out)["id"]) == sorted(ids)
    # A Parquet file no aeops job wrote would be read with the output: refused, untouched.
    (out / "notes.parquet").write_bytes(b"not ours")
    (tmp_path / "in" / "part-001.parquet").unlink()
    with pytest.raises(ValueError, match=r"holds notes.parquet, which no aeops job wrote"):
        _job(store, "tabular", tmp_path / "in").run(out)
    assert (out / "part-001.parquet").exists() and (out / SUCCESS_MARKER).exists()


def test_a_failing_first_part_leaves_nothing_and_an_earlier_output_whole(
    store: dict[str, Any], tmp_path: Path
) -> None:
    (tmp_path / "bad").mkdir()
    tabular_rows(10).drop(columns=["f3"]).to_parquet(tmp_path / "bad" / "x.parquet")
    with pytest.raises(BatchValidationError, match="f3"):
        _job(store, "tabular", tmp_path / "bad").run(tmp_path / "new")
    assert not (tmp_path / "new").exists()
    ids = _parts(tmp_path / "in", 2, 20)
    _job(store, "tabular", tmp_path / "in").run(tmp_path / "out")
    with pytest.raises(BatchValidationError, match="f3"):
        _job(store, "tabular", tmp_path / "bad").run(tmp_path / "out")
    assert (tmp_path / "out" / SUCCESS_MARKER).exists()  # still complete, still readable
    assert sorted(pd.read_parquet(tmp_path / "out")["id"]) == sorted(ids)


def test_an_output_path_of_the_other_shape_is_refused_before_any_work(
    store: dict[str, Any], tmp_path: Path
) -> None:
    tabular_rows(10).to_parquet(tmp_path / "in.parquet")
    (tmp_path / "folder.parquet").mkdir()  # say, an unfinished folder-input output
    with pytest.raises(ValueError, match=r"folder.parquet is a folder with no _SUCCESS .* wri"):
        _job(store, "tabular", tmp_path / "in.parquet").run(tmp_path / "folder.parquet")
    _parts(tmp_path / "in", 1, 10)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"file is a file, but the folder input"):
        _job(store, "tabular", tmp_path / "in").run(tmp_path / "file")
    assert (tmp_path / "file").read_text() == "x"
    assert not any((tmp_path / "folder.parquet").iterdir())


def test_a_file_input_replaces_a_finished_folder_output_once_its_file_is_complete(
    store: dict[str, Any], tmp_path: Path
) -> None:
    # After a Spark run (or a folder input) the local engine used to refuse the path.
    _parts(tmp_path / "in", 2, 20)
    out = tmp_path / "out.parquet"
    _job(store, "tabular", tmp_path / "in").run(out)
    before = pd.read_parquet(out)
    bad = tabular_rows(10).drop(columns=["f3"])
    bad.to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(BatchValidationError, match="f3"):
        _job(store, "tabular", tmp_path / "bad.parquet").run(out)
    pd.testing.assert_frame_equal(pd.read_parquet(out), before)  # a failed run leaves it
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    rows = tabular_rows(30, seed=5)
    rows.to_parquet(tmp_path / "one.parquet")
    _job(store, "tabular", tmp_path / "one.parquet").run(out)
    assert out.is_file() and pd.read_parquet(out)["id"].tolist() == rows["id"].tolist()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    # A finished folder holding anything no aeops job wrote stays, refused.
    _parts(tmp_path / "in2", 1, 20)
    out2 = tmp_path / "out2"
    _job(store, "tabular", tmp_path / "in2").run(out2)
    (out2 / "notes.parquet").write_bytes(b"not ours")
    with pytest.raises(ValueError, match=r"holds notes.parquet, which no aeops job wrote"):
        _job(store, "tabular", tmp_path / "one.parquet").run(out2)
    (out2 / "notes.parquet").unlink()
    (out2 / "sub").mkdir()
    (out2 / "sub" / "data.csv").write_text("a\n1\n")
    (out2 / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"also holds .*notes.txt.*, which no aeops job wrote"):
        _job(store, "tabular", tmp_path / "one.parquet").run(out2)
    assert (out2 / SUCCESS_MARKER).exists() and (out2 / "sub" / "data.csv").exists()
    # A user's Parquet file among the set-aside rows is not one of them either.
    (out2 / "notes.txt").unlink()
    shutil.rmtree(out2 / "sub")
    (out2 / "_quarantine").mkdir(exist_ok=True)
    tabular_rows(3).to_parquet(out2 / "_quarantine" / "my_notes.parquet")
    with pytest.raises(ValueError, match=r"also holds _quarantine/my_notes.parquet"):
        _job(store, "tabular", tmp_path / "one.parquet").run(out2)
    # A killed rerun's temporary part is aeops's own: the folder is replaced with it.
    (out2 / "_quarantine" / "my_notes.parquet").unlink()
    (out2 / f".part-000.parquet.tmp-{WRITER}-99999").write_bytes(b"half a part")
    _job(store, "tabular", tmp_path / "one.parquet").run(out2)
    assert out2.is_file()


def test_a_folder_output_is_put_back_when_the_file_cannot_take_its_place(
    store: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _parts(tmp_path / "in", 2, 20)
    out = tmp_path / "out.parquet"
    _job(store, "tabular", tmp_path / "in").run(out)
    before = pd.read_parquet(out)
    tabular_rows(30, seed=5).to_parquet(tmp_path / "one.parquet")
    rename = Path.replace

    def full_disk(self: Path, target: Any) -> Path:
        if Path(target) == out:  # the finished file's move into place
            raise OSError(28, "No space left on device")
        return rename(self, target)

    monkeypatch.setattr(Path, "replace", full_disk)
    with pytest.raises(OSError, match="No space left"):
        _job(store, "tabular", tmp_path / "one.parquet").run(out)
    monkeypatch.undo()
    pd.testing.assert_frame_equal(pd.read_parquet(out), before)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    # A link to a finished folder: the link is replaced, the folder it names is not.
    link = tmp_path / "link.parquet"
    link.symlink_to(out)
    _job(store, "tabular", tmp_path / "one.parquet").run(link)
    assert link.is_file() and not link.is_symlink() and (out / SUCCESS_MARKER).exists()


def test_a_folder_with_subfolders_is_refused_rather_than_half_read(
    store: dict[str, Any], tmp_path: Path
) -> None:
    _parts(tmp_path / "in", 1, 10)
    (tmp_path / "in" / "_temporary").mkdir()  # hidden, as Spark and Hadoop leave them
    (tmp_path / "in" / "date=2026-11-27").mkdir()
    tabular_rows(5, seed=3).to_parquet(tmp_path / "in" / "date=2026-11-27" / "b.parquet")
    with pytest.raises(SourceError, match=r"holds subfolders \(date=2026-11-27\), which are not"):
        _job(store, "tabular", tmp_path / "in").run(tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_empty_series_part_gets_an_empty_output(store: dict[str, Any], tmp_path: Path) -> None:
    series = make_timeseries_demo(n_steps=50).drop(columns=["label"])
    series.iloc[:0].to_parquet(tmp_path / "empty.parquet")
    report = _job(store, "timeseries", tmp_path / "empty.parquet", output="scores").run(
        tmp_path / "out.parquet"
    )
    assert report.rows == 0
    assert pq.read_table(tmp_path / "out.parquet").num_rows == 0


def test_batches_of_large_samples_are_bounded_by_bytes_not_rows(
    store: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 65,536 rows of 64 x 64 RGB images took 4 GB for a 93 MiB input.
    images = flat_image_rows()
    images.to_parquet(tmp_path / "in.parquet")
    _job(store, "image", tmp_path / "in.parquet", output="scores").run(tmp_path / "rows.parquet")
    sample_bytes = 4 * 8 * 8  # the demo's 8 x 8 gray digits, as float32
    monkeypatch.setattr(_engine, "_BATCH_SAMPLE_BYTES", 10 * sample_bytes)
    asked: list[int] = []
    batches = TableSource.batches

    def recorded(self: TableSource, part: Path, batch_rows: int, *args: Any) -> Any:
        asked.append(batch_rows)
        return batches(self, part, batch_rows, *args)

    monkeypatch.setattr(TableSource, "batches", recorded)
    job = _job(store, "image", tmp_path / "in.parquet", output="scores")
    assert (job.batch_rows, job.rows_per_batch) == (65536, 10)
    job.run(tmp_path / "bytes.parquet")
    assert asked == [10]
    assert pq.read_table(tmp_path / "bytes.parquet").equals(
        pq.read_table(tmp_path / "rows.parquet")
    )


def test_a_series_part_shorter_than_a_window_is_named(
    store: dict[str, Any], tmp_path: Path
) -> None:
    (tmp_path / "in").mkdir()
    series = make_timeseries_demo(n_steps=200).drop(columns=["label"])
    series.to_parquet(tmp_path / "in" / "a.parquet")
    series.head(10).to_parquet(tmp_path / "in" / "c.parquet")  # windows of 16
    with pytest.raises(InputSchemaError, match=r"c\.parquet: a series of 10 rows is shorter"):
        _job(store, "timeseries", tmp_path / "in", output="scores").run(tmp_path / "out")


def test_a_series_without_its_timestamps_is_told_so(store: dict[str, Any], tmp_path: Path) -> None:
    # It was told only that a column 'timestamp_step_seconds' was missing, and then
    # that the input had no data.timestamp_column, never which column that was.
    series = make_timeseries_demo(n_steps=200).drop(columns=["label"])
    series.rename(columns={"timestamp": "ts"}).to_parquet(tmp_path / "in.parquet")
    columns = ["temperature", "pressure", "flow", "timestamp"]
    message = f"in.parquet has no column 'timestamp', which the model needs; it expects {columns}"
    with pytest.raises(SourceError, match=re.escape(message)):
        _job(store, "timeseries", tmp_path / "in.parquet").run(tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()


def test_an_image_input_without_the_image_column_is_told_its_name(
    store: dict[str, Any], tmp_path: Path
) -> None:
    # The suite's failures named only the derived image_channels, image_height, ...
    flat_image_rows().rename(columns={"image": "pixels"}).to_parquet(tmp_path / "in.parquet")
    message = "in.parquet has no column 'image', which the model needs; it expects ['image']"
    with pytest.raises(SourceError, match=re.escape(message)):
        _job(store, "image", tmp_path / "in.parquet", output="scores").run(tmp_path / "out")
    # A series model given the images names its own columns, not data.feature_columns.
    with pytest.raises(SourceError, match=r"has no column 'temperature' \(nor \['pressure'"):
        _job(store, "timeseries", tmp_path / "in.parquet").run(tmp_path / "out")
    assert not (tmp_path / "out").exists()
    # So does evaluate, which checks the input with the same suite.
    pixels = flat_image_rows().rename(columns={"image": "pixels"})
    pixels.attrs["source"] = "pixels.parquet"
    bundle = load_registered_bundle(store["models"]["image"])
    message = "pixels.parquet has no column 'image', which the model needs; it expects ['image']"
    with mlflow.start_run(), pytest.raises(InputSchemaError, match=re.escape(message)):
        evaluate_registered_model(bundle, pixels, {})


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_an_input_with_no_rows_and_none_of_the_models_columns_is_refused(
    store: dict[str, Any], tmp_path: Path, suffix: str
) -> None:
    # It passed as an empty answer (no batch was checked) and replaced a good output.
    path = tmp_path / f"in{suffix}"
    if suffix == ".csv":
        path.write_text("foo,bar\n")
    else:
        pq.write_table(pa.table({}), path)
    tabular_rows(10).to_parquet(tmp_path / "good.parquet")
    _job(store, "tabular", tmp_path / "good.parquet").run(tmp_path / "out.parquet")
    before = (tmp_path / "out.parquet").read_bytes()
    with pytest.raises(SourceError, match=r"\(no rows\) has no column 'f0' \(nor \['f1'"):
        _job(store, "tabular", path).run(tmp_path / "out.parquet")
    assert (tmp_path / "out.parquet").read_bytes() == before


def test_an_empty_part_keeps_the_inputs_id_type(store: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    rows = tabular_rows(20).assign(id=lambda f: "u" + f["id"].astype(str))
    rows.iloc[:0].to_parquet(tmp_path / "in" / "a.parquet")
    rows.to_parquet(tmp_path / "in" / "b.parquet")
    _job(store, "tabular", tmp_path / "in").run(tmp_path / "out")
    read = pq.read_table(tmp_path / "out")  # one dataset: the parts' schemas agree
    assert read.column("id").to_pylist() == rows["id"].tolist()


def test_a_part_with_rows_set_aside_is_written_again_by_a_failing_run(
    store: dict[str, Any], tmp_path: Path
) -> None:
    (tmp_path / "in").mkdir()
    spoiled = tabular_rows(50)
    spoiled.loc[3, "f1"] = np.nan
    spoiled.to_parquet(tmp_path / "in" / "part-000.parquet")
    _job(store, "tabular", tmp_path / "in", invalid_rows="quarantine").run(tmp_path / "out")
    with pytest.raises(BatchValidationError, match="rows 0-49"):
        _job(store, "tabular", tmp_path / "in").run(tmp_path / "out")


def test_a_failed_cleanup_of_one_output_still_cleans_up_the_other(
    store: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spoiled = tabular_rows(300)
    spoiled.loc[3, "f1"] = np.nan  # batch 0 opens the quarantine file
    spoiled.to_parquet(tmp_path / "in.parquet")
    job = _job(store, "tabular", tmp_path / "in.parquet", invalid_rows="quarantine", batch_rows=100)
    answers = EmbedJob._answers
    calls = []

    def model_fails_on_the_second_batch(self: EmbedJob, *args: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("the model failed")
        return answers(self, *args)

    abort = AtomicParquetWriter.abort

    def abort_fails_for_the_output(self: Any) -> None:
        abort(self)
        if self.target.name == "out.parquet":
            raise OSError("no space left on device")

    monkeypatch.setattr(EmbedJob, "_answers", model_fails_on_the_second_batch)
    monkeypatch.setattr(AtomicParquetWriter, "abort", abort_fails_for_the_output)
    with pytest.raises(RuntimeError, match="the model failed"):  # the cause, not the cleanup's
        job.run(tmp_path / "out.parquet")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.parquet"]
    assert not [t for t in threading.enumerate() if t.name == "aeops-writer"]


def _another_model(bundle: LoadedBundle) -> LoadedBundle:
    """The same network under another registered version, flagging every row."""
    predictor = dataclasses.replace(bundle.predictor, threshold=Threshold(-1.0, "quantile"))
    provenance = {**bundle.provenance, "model_version": "99", "threshold": "-1.0"}
    return dataclasses.replace(bundle, predictor=predictor, provenance=provenance)


def test_a_rerun_writes_again_the_parts_a_new_model_or_a_changed_input_outdated(
    store: dict[str, Any], tmp_path: Path
) -> None:
    _parts(tmp_path / "in", 2, 150)
    out = tmp_path / "out"
    champion = load_registered_bundle(store["models"]["tabular"])
    first = EmbedJob(TableSource(tmp_path / "in"), champion, output="scores").run(out)
    assert (first.parts_written, first.parts_skipped) == (2, 0)

    # A new champion: every part is scored again, by it, and says so in its metadata.
    newer = _another_model(champion)
    second = EmbedJob(TableSource(tmp_path / "in"), newer, output="scores").run(out)
    assert (second.parts_written, second.parts_skipped) == (2, 0)
    assert pd.read_parquet(out)["is_anomaly"].all()
    assert pq.read_schema(out / "part-000.parquet").metadata[b"aeops.model_version"] == b"99"

    # One input part replaced by other rows: only that part is scored again.
    replacement = tabular_rows(80, seed=7)
    replacement.to_parquet(tmp_path / "in" / "part-001.parquet")
    third = EmbedJob(TableSource(tmp_path / "in"), newer, output="scores").run(out)
    assert (third.parts_written, third.parts_skipped) == (1, 1)
    assert pd.read_parquet(out / "part-001.parquet")["id"].tolist() == replacement["id"].tolist()


def test_a_folders_quarantine_stays_out_of_its_output_and_goes_when_fixed(
    store: dict[str, Any], tmp_path: Path
) -> None:
    (tmp_path / "in").mkdir()
    rows = tabular_rows(200)
    spoiled = rows.copy()
    spoiled.loc[[3, 150], "f1"] = np.nan
    spoiled.to_parquet(tmp_path / "in" / "part-000.parquet")
    out = tmp_path / "out"
    job = _job(store, "tabular", tmp_path / "in", invalid_rows="quarantine")
    assert job.run(out).quarantined_rows == 2
    set_aside = out / "_quarantine" / "part-000.parquet"
    assert pd.read_parquet(set_aside)["id"].tolist() == rows["id"].iloc[[3, 150]].tolist()
    assert len(pd.read_parquet(out)) == 198  # readers of the folder skip _quarantine/

    rows.to_parquet(tmp_path / "in" / "part-000.parquet")  # the input, mended
    report = _job(store, "tabular", tmp_path / "in", invalid_rows="quarantine").run(out)
    assert (report.parts_written, report.quarantined_rows) == (1, 0)
    assert not set_aside.exists()
    assert len(pd.read_parquet(out)) == 200


def test_a_part_finished_under_fail_is_kept_under_quarantine_not_the_other_way(
    store: dict[str, Any], tmp_path: Path
) -> None:
    (tmp_path / "in").mkdir()
    tabular_rows(100, seed=1).to_parquet(tmp_path / "in" / "clean.parquet")
    spoiled = tabular_rows(100, seed=2)
    spoiled.loc[7, "f1"] = np.nan
    spoiled.to_parquet(tmp_path / "in" / "spoiled.parquet")
    out = tmp_path / "out"
    # Under fail, the clean part is finished before the spoiled one stops the job.
    with pytest.raises(BatchValidationError, match=r"spoiled\.parquet"):
        _job(store, "tabular", tmp_path / "in", invalid_rows="fail").run(out)
    before = (out / "clean.parquet").stat().st_mtime_ns
    # It passed every check: quarantine's answer too, kept without a warning.
    first = _job(store, "tabular", tmp_path / "in", invalid_rows="quarantine").run(out)
    assert (first.parts_written, first.parts_skipped, first.quarantined_rows) == (1, 1, 1)
    assert (out / "clean.parquet").stat().st_mtime_ns == before
    # A part that set a row aside is never a failing run's answer, even once the
    # set-aside file is gone: the run writes it again, and stops at the bad row.
    (out / "_quarantine" / "spoiled.parquet").unlink()
    with pytest.raises(BatchValidationError, match=r"spoiled\.parquet"):
        _job(store, "tabular", tmp_path / "in", invalid_rows="fail").run(out)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"invalid_rows": "quarantine"}, r"invalid_rows='quarantine' cannot be used with a time"),
        ({"engine": "spark"}, r"engine='spark' cannot run a time-series model"),
    ],
)
def test_a_series_is_never_cut_into_pieces(
    store: dict[str, Any], tmp_path: Path, options: dict[str, str], message: str
) -> None:
    make_timeseries_demo(n_steps=200).to_parquet(tmp_path / "series.parquet")
    job = _job(store, "timeseries", tmp_path / "series.parquet", **options)
    with pytest.raises(ValueError, match=message):
        job.run(tmp_path / "out.parquet")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["series.parquet"]


def test_a_csv_feature_of_whole_numbers_may_hold_a_fraction_later(
    store: dict[str, Any], tmp_path: Path
) -> None:
    # Longer than pyarrow's first block (1 MB), which would fix f1's type as int64.
    rows = tabular_rows(60_000)
    rows["f1"] = rows["f1"].round()
    rows.loc[59_000, "f1"] = 2.5
    csv_path = tmp_path / "in.csv"
    # Written as "3", not "3.0", except the one fraction near the end.
    rows.astype({"f1": object}).assign(f1=[f"{v:g}" for v in rows["f1"]]).to_csv(
        csv_path, index=False
    )
    assert pd.read_csv(csv_path, nrows=50_000)["f1"].dtype == np.int64  # whole numbers
    _job(store, "tabular", csv_path, output="scores").run(tmp_path / "csv.parquet")
    rows.to_parquet(tmp_path / "in.parquet")
    _job(store, "tabular", tmp_path / "in.parquet", output="scores").run(tmp_path / "pq.parquet")
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "csv.parquet"), pd.read_parquet(tmp_path / "pq.parquet")
    )


def test_a_csv_value_that_is_no_number_is_named_with_its_row(
    store: dict[str, Any], tmp_path: Path
) -> None:
    rows = tabular_rows(50).astype({"f4": object})
    rows.loc[17, "f4"] = "n/a?"
    rows.to_csv(tmp_path / "in.csv", index=False)
    with pytest.raises(SourceError, match=r"column 'f4' holds 'n/a\?' in row 17; expected a num"):
        _job(store, "tabular", tmp_path / "in.csv").run(tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()


def test_a_semicolon_separated_latin_1_csv_is_read_with_its_settings(
    store: dict[str, Any], tmp_path: Path
) -> None:
    # The dataset took no load_args; the job failed with the whole header repeated in
    # 30 missing-column messages.
    rows = tabular_rows(60).assign(site="Zürich")  # an extra column, not UTF-8 below
    rows.to_parquet(tmp_path / "in.parquet")
    rows.to_csv(tmp_path / "in.csv", index=False, sep=";", encoding="latin-1")
    bundle = load_registered_bundle(store["models"]["tabular"])
    with pytest.raises(SourceError, match=r"it looks ';'-delimited; set load_args: \{sep: ';'\}"):
        EmbedJob(TableSource(tmp_path / "in.csv"), bundle).run(tmp_path / "out.parquet")
    dataset = TableSourceDataset(
        filepath=str(tmp_path / "in.csv"), load_args={"sep": ";", "encoding": "latin-1"}
    )
    source = dataset.load()
    assert (source.csv_delimiter, source.csv_encoding) == (";", "latin-1")
    assert source.count_rows(tmp_path / "in.csv") == 60
    EmbedJob(source, bundle, output="scores").run(tmp_path / "csv.parquet")
    _job(store, "tabular", tmp_path / "in.parquet", output="scores").run(tmp_path / "pq.parquet")
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "csv.parquet"), pd.read_parquet(tmp_path / "pq.parquet")
    )
    # A value that is no number is named as in a comma-separated file.
    spoiled = rows.astype({"f2": object})
    spoiled.loc[41, "f2"] = "abc"
    spoiled.to_csv(tmp_path / "in.csv", index=False, sep=";", encoding="latin-1")
    with pytest.raises(SourceError, match=r"column 'f2' holds 'abc' in row 41"):
        EmbedJob(dataset.load(), bundle).run(tmp_path / "spoiled.parquet")
    with pytest.raises(DatasetError, match=r"load_args \['skiprows'\] are not read by the batch"):
        TableSourceDataset(filepath=str(tmp_path / "in.csv"), load_args={"skiprows": 1})
    # Settings that could not work are named at once, not mid-job.
    with pytest.raises(DatasetError, match=r"sep='\\\\t' must be one character"):
        TableSourceDataset(filepath=str(tmp_path / "in.csv"), load_args={"sep": "\\t"})
    with pytest.raises(DatasetError, match=r"encoding='latin-9' is not an encoding"):
        TableSourceDataset(filepath=str(tmp_path / "in.csv"), load_args={"encoding": "latin-9"})


def test_a_csv_header_is_refused_as_another_delimiters_only_when_it_looks_so(
    tmp_path: Path,
) -> None:
    path = tmp_path / "in.csv"
    path.write_text('"a;b"\n1\n')  # one column, named with a semicolon in quotes
    assert TableSource(path).columns(path) == ["a;b"]
    path.write_text("a|b;c\n1;2\n")  # the delimiter is set: its reading stands
    assert TableSource(path, csv_delimiter=";").columns(path) == ["a|b", "c"]
    with pytest.raises(SourceError, match=r"it looks ';'-delimited"):
        TableSource(path).columns(path)
    # A byte the encoding cannot decode is named with the setting that fixes it.
    path.write_bytes(b"id,f0\n1,2\n3,\x81\n")
    with pytest.raises(SourceError, match=r"could not be read as cp1252 text .*load_args"):
        list(TableSource(path, csv_encoding="cp1252").batches(path, 100))


def test_csv_ids_are_read_as_train_reads_them_and_as_text_when_asked(
    store: dict[str, Any], tmp_path: Path
) -> None:
    bundle = load_registered_bundle(store["models"]["tabular"])
    rows = tabular_rows(60)

    def embedded_ids(frame: pd.DataFrame, **load_args: Any) -> list[Any]:
        frame.to_csv(tmp_path / "in.csv", index=False)
        source = TableSourceDataset(filepath=str(tmp_path / "in.csv"), load_args=load_args)
        EmbedJob(source.load(), bundle).run(tmp_path / "out.parquet")
        return pq.read_table(tmp_path / "out.parquet").column("id").to_pylist()

    # Date-like ids were read as timestamps, and written as such: not what train wrote.
    hours = pd.date_range("2024-01-01", periods=60, freq="h").strftime("%Y-%m-%d %H:%M:%S")
    assert embedded_ids(rows.assign(id=hours)) == list(hours)
    # A blank id was the text "" and passed; pandas, and so train, read it as missing.
    blank = rows.assign(id=hours.where(np.arange(60) != 3, ""))
    with pytest.raises(BatchValidationError, match=r"not_be_null \(column 'id'\).*\[3\]"):
        embedded_ids(blank)
    # Zero-padded ids are numbers unless read as text, as pandas' dtype does in train.
    padded = rows.assign(id=[f"{i:06d}" for i in range(60)])
    padded.loc[10, "id"] = "5"  # 000005 and 5: one number, two ids
    with pytest.raises(BatchValidationError, match=r"be_unique \(column 'id'\)"):
        embedded_ids(padded)
    assert embedded_ids(padded, dtype={"id": "str"}) == padded["id"].tolist()
    # A folder's part finished under other reading rules or settings is written again.
    (tmp_path / "in").mkdir()
    padded.assign(id=[f"{i:06d}" for i in range(60)]).to_csv(tmp_path / "in/a.csv", index=False)
    as_numbers = EmbedJob(TableSource(tmp_path / "in"), bundle)
    as_text = EmbedJob(TableSource(tmp_path / "in", csv_text_columns=("id",)), bundle)
    for job, written, first in ((as_numbers, 1, 0), (as_text, 1, "000000"), (as_text, 0, "000000")):
        assert job.run(tmp_path / "out").parts_written == written
        assert pd.read_parquet(tmp_path / "out")["id"][0] == first
    # pandas' missing cells are missing in a text column too, not text.
    with pytest.raises(BatchValidationError, match=r"not_be_null \(column 'id'\).*\[3, 4\]"):
        embedded_ids(rows.assign(id=hours.where(~np.isin(np.arange(60), [3, 4]), "NA")))
    for dtype, message in (
        ({"id": "int64"}, r"dtype \{'id': 'int64'\} is not read .* as text only"),
        ("str", r"dtype='str' must map column names to str"),
    ):
        with pytest.raises(DatasetError, match=message):
            TableSourceDataset(filepath=str(tmp_path / "in.csv"), load_args={"dtype": dtype})


@pytest.mark.parametrize(("late_id", "read_as"), [("A-17", pa.string()), ("2.5", pa.float64())])
def test_csv_ids_that_change_type_after_the_first_block_are_read_again_wider(
    store: dict[str, Any], tmp_path: Path, late_id: str, read_as: pa.DataType
) -> None:
    rows = tabular_rows(40_000).astype({"id": str})
    rows.loc[39_990, "id"] = late_id  # far past pyarrow's first block, which fixes types
    rows.to_csv(tmp_path / "in.csv", index=False)
    counted: list[int] = []
    job = _job(store, "tabular", tmp_path / "in.csv", batch_rows=1000)
    report = job.run(tmp_path / "out.parquet", progress=counted.append)
    ids = pq.read_table(tmp_path / "out.parquet").column("id")
    assert ids.type == read_as
    expected = pd.read_csv(tmp_path / "in.csv")["id"]  # as pandas reads the whole column
    assert ids.to_pylist() == expected.tolist()
    assert report.rows == sum(counted) == 40_000  # the first pass's rows taken back


def test_generated_ids_run_on_across_a_folders_parts_and_mark_set_aside_rows(
    store: dict[str, Any], tmp_path: Path
) -> None:
    (tmp_path / "in").mkdir()
    first = tabular_rows(30, seed=1).drop(columns=["id"])
    first.loc[4, "f1"] = np.nan
    first.to_parquet(tmp_path / "in" / "a.parquet")
    tabular_rows(20, seed=2).drop(columns=["id"]).to_csv(tmp_path / "in" / "b.csv", index=False)
    tabular_rows(10, seed=3).drop(columns=["id"]).to_parquet(tmp_path / "in" / "c.parquet")
    out = tmp_path / "out"
    _job(store, "tabular", tmp_path / "in", invalid_rows="quarantine").run(out)
    ids = pd.read_parquet(out)["id"].tolist()
    assert ids == [i for i in range(60) if i != 4]  # row positions in the whole input
    assert pd.read_parquet(out / "_quarantine" / "a.parquet")["id"].tolist() == [4]
    # A part added in front moves the ids of every part after it: those are rewritten.
    tabular_rows(5, seed=4).drop(columns=["id"]).to_parquet(tmp_path / "in" / "0.parquet")
    report = _job(store, "tabular", tmp_path / "in", invalid_rows="quarantine").run(out)
    assert (report.parts_written, report.parts_skipped) == (4, 0)
    assert pd.read_parquet(out)["id"].tolist() == [i for i in range(65) if i != 9]


def test_series_timestamps_and_nested_images_are_read_as_train_reads_them(
    store: dict[str, Any], tmp_path: Path
) -> None:
    series = make_timeseries_demo(n_steps=120).drop(columns=["label"])
    series.to_csv(tmp_path / "iso.csv", index=False)
    us = series.assign(timestamp=series["timestamp"].dt.strftime("%m/%d/%Y %H:%M"))
    us.to_csv(tmp_path / "us.csv", index=False)  # pyarrow reads only ISO 8601 as times
    for name in ("iso", "us"):
        _job(store, "timeseries", tmp_path / f"{name}.csv", output="scores").run(
            tmp_path / f"{name}.parquet"
        )
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "us.parquet"), pd.read_parquet(tmp_path / "iso.parquet")
    )
    images = image_rows().drop(columns=["label"])
    flat = images.assign(image=[a.reshape(-1).astype(np.float64) for a in images["image"]])
    nested = images.assign(image=[a.reshape(8, 8).tolist() for a in images["image"]])
    for name, frame in (("flat", flat), ("nested", nested)):
        frame.to_parquet(tmp_path / f"{name}-in.parquet")
        _job(store, "image", tmp_path / f"{name}-in.parquet").run(tmp_path / f"{name}.parquet")
    assert pq.read_table(tmp_path / "nested.parquet").equals(
        pq.read_table(tmp_path / "flat.parquet")
    )


def test_a_flat_image_of_the_wrong_size_is_named_by_its_value_count(
    store: dict[str, Any], tmp_path: Path
) -> None:
    # The batch job named null channels and height and a "width" of 65.
    images = image_rows().drop(columns=["label"])
    cells = [a.reshape(-1).astype(np.float64) for a in images["image"]]
    cells[7] = np.zeros(65)
    images.assign(image=cells).to_parquet(tmp_path / "in.parquet")
    with pytest.raises(BatchValidationError) as caught:
        _job(store, "image", tmp_path / "in.parquet").run(tmp_path / "out.parquet")
    message = str(caught.value)
    assert re.search(r"(?s)image_values.*\[64, 64\].*sample values \[65", message), message
    assert not re.search(r"image_(channels|height|width)", message), message
    assert not (tmp_path / "out.parquet").exists()


def test_a_folder_whose_parts_disagree_on_the_id_column_is_refused_before_any_work(
    store: dict[str, Any], tmp_path: Path
) -> None:
    (tmp_path / "in").mkdir()
    tabular_rows(30, seed=1).to_parquet(tmp_path / "in" / "a.parquet")  # ids 0..29
    tabular_rows(20, seed=2).drop(columns=["id"]).to_parquet(tmp_path / "in" / "b.parquet")
    with pytest.raises(SourceError, match=r"disagree on the id column 'id': a.parquet has it"):
        _job(store, "tabular", tmp_path / "in").run(tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_an_input_with_a_repeated_column_name_is_refused(
    store: dict[str, Any], tmp_path: Path, suffix: str
) -> None:
    rows = tabular_rows(20)
    table = pa.Table.from_pandas(rows, preserve_index=False)
    table = table.append_column("f1", table.column("f2"))  # a second 'f1'
    path = tmp_path / f"in{suffix}"
    if suffix == ".csv":
        pacsv.write_csv(table, path)
    else:
        pq.write_table(table, path)
    with pytest.raises(SourceError, match=r"more than one column named 'f1'"):
        _job(store, "tabular", path).run(tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()


def test_temporary_files_a_killed_job_left_are_removed_by_the_next_run(
    store: dict[str, Any], tmp_path: Path
) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its pid now names no process
    tabular_rows(30).to_parquet(tmp_path / "in.parquet")
    hour_ago = time.time() - 3600

    def temp(suffix: str, age: float = hour_ago) -> Path:
        path = tmp_path / f".out.parquet.tmp-{suffix}"
        path.write_bytes(b"half a file")
        os.utime(path, (age, age))
        return path

    left = temp(f"{WRITER}-{dead.pid}")
    # A folder output it was replacing when it was killed, set aside under its name.
    replaced = tmp_path / f".out.parquet.tmp-{WRITER}-{dead.pid}-replaced"
    replaced.mkdir()
    (replaced / "part-000.parquet").write_bytes(b"an earlier output")
    os.utime(replaced, (hour_ago, hour_ago))
    kept = [
        temp(f"{WRITER}-{os.getppid()}"),  # its writer still runs
        temp("backup-2024"),  # a user's file
        temp(f"elsewhere-{dead.pid}"),  # another machine's: its pids mean nothing here
    ]
    recent = tmp_path / f".out.parquet.tmp-{WRITER}-{dead.pid + 1}"
    recent.write_bytes(b"written a moment ago")  # a paused writer, maybe
    _job(store, "tabular", tmp_path / "in.parquet").run(tmp_path / "out.parquet")
    assert not left.exists() and not replaced.exists()
    assert all(path.exists() for path in [*kept, recent])
    assert len(pd.read_parquet(tmp_path / "out.parquet")) == 30
