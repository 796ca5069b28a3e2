"""Batch-embedding throughput of the local engine against the I/O limit.

For each size, generated Parquet of N rows x 64 float32 columns (plus an int64 id)
is embedded by ``aeops.embedding.EmbedJob`` (validation against the bundle's suite,
scaling, an MLP encoder, a fixed-size-list output with provenance) and by the limit:
pyarrow reading the same input and writing an output of the job's schema and size
(id and a float32 embedding) with no model and no checks.

Each run is a fresh worker process of this script, started alternately (limit,
aeops, limit, aeops, ...), so its peak RSS is its own and not what generating the
data left in the allocator; the best time of each is reported. The peak is the
process's ``VmHWM`` on Linux, not ``ru_maxrss``: a child started through
vfork/exec inherits the parent's high-water mark in ``ru_maxrss``, so every worker
would report at least the parent's peak from generating the data. The
aeops worker loads a bundle the parent wrote, as the ``embed`` pipeline loads a
registered model, so nothing but the job reads the input in its process, and runs
it once before the clock starts: the RSS before the run then holds the model's math
libraries (on a GPU the CUDA context and cuBLAS), and peak minus before is what
streaming the input costs. The
figure is rows per second and the ratio aeops/limit. The last line is for the largest
size: ``embed_throughput aeops/limit=X peak_rss_mb=Y``.

    python bench/embed_throughput.py                      # 1M and 10M rows
    python bench/embed_throughput.py --rows 1000000 --json out.json
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import queue
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from aeops.bundle import BundleSpec, LoadedBundle, read_bundle, write_bundle
from aeops.data import TabularInputs, fit_scaler
from aeops.embedding import EmbedJob, TableSource
from aeops.embedding._output import PARQUET_WRITE_OPTIONS
from aeops.embedding._source import open_parquet, parquet_batches
from aeops.models import ModelConfig, build_model
from aeops.scoring import Predictor, Threshold

N_FEATURES = 64
LATENT = 16
BATCH_ROWS = 65536
COLUMNS = [f"x{i:02d}" for i in range(N_FEATURES)]


def generate(path: Path, rows: int, seed: int = 0) -> None:
    """Correlated float32 features with an int64 id, written in row groups of 1M."""
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(8, N_FEATURES)).astype(np.float32)
    schema = pa.schema([("id", pa.int64())] + [(c, pa.float32()) for c in COLUMNS])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, 1_000_000):
            n = min(1_000_000, rows - start)
            values = rng.standard_normal((n, 8), dtype=np.float32) @ mixing
            arrays = [pa.array(np.arange(start, start + n, dtype=np.int64))]
            arrays += [pa.array(values[:, i]) for i in range(N_FEATURES)]
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))


def write_bench_bundle(source: Path, directory: Path) -> Path:
    """Write an MLP bundle (64 -> 64 -> 32 -> 16) with a scaler fit on ``source``'s
    first 50,000 rows into ``directory``, as ``train`` would register one.

    The suite is the one ``train`` would build when Great Expectations is installed;
    without it (a bare GPU image), the runs have no validation and say so. Built here,
    in the parent: the worker loads it as the ``embed`` pipeline loads a registered
    model, and reads nothing of the input before the job (pyarrow decodes a whole row
    group even for a 50,000-row sample, which would land in the worker's RSS).
    """
    sample = next(open_parquet(source).iter_batches(batch_size=50_000)).to_pandas()
    torch.manual_seed(0)
    config = ModelConfig(architecture="mlp", latent_dim=LATENT, hidden_dims=(64, 32), dropout=0)
    model = build_model(config, (N_FEATURES,)).eval()
    scaler = fit_scaler(sample[COLUMNS].to_numpy(), COLUMNS, "robust")
    predictor = Predictor(model, TabularInputs(tuple(COLUMNS)), scaler, Threshold(1.0, "quantile"))
    try:
        from aeops.validation import build_suite, suite_to_dict

        suite = suite_to_dict(build_suite(sample, id_column="id", feature_columns=COLUMNS))
    except ImportError:
        suite = {}
    spec = BundleSpec(id_column="id", validation_suite=suite, data={"kind": "tabular"})
    return write_bundle(directory, predictor, spec)


def limit(source: Path, target: Path) -> float:
    """Read the input with the engine's reader and write an output of the job's schema
    and size, with the engine's writer options; no model, no checks.

    Reading and writing overlap, as in the job: this thread reads while a writer
    thread writes the batch before, two batches in flight at most. A single thread
    doing both left the limit slower than it need be (a GPU job beat it).

    The embedding values are random floats made before the clock starts: constant
    values (zeros) would compress to a small fraction of the job's output, which is
    not an output of the same size.
    """
    schema = pa.schema([("id", pa.int64()), ("embedding", pa.list_(pa.float32(), LATENT))])
    rng = np.random.default_rng(1)
    values = rng.standard_normal(BATCH_ROWS * LATENT, dtype=np.float32)
    batches: queue.Queue[pa.RecordBatch | None] = queue.Queue(maxsize=2)
    failures: list[BaseException] = []

    def write() -> None:
        try:
            with pq.ParquetWriter(target, schema, **PARQUET_WRITE_OPTIONS) as writer:
                while (batch := batches.get()) is not None:
                    writer.write_batch(batch)
        except BaseException as error:  # reported by the reading thread
            failures.append(error)
            while batches.get() is not None:  # let the reader finish
                pass

    started = time.perf_counter()
    writer = threading.Thread(target=write)
    writer.start()
    try:
        for batch in parquet_batches(source, BATCH_ROWS):
            n = batch.num_rows
            embedding = pa.FixedSizeListArray.from_arrays(pa.array(values[: n * LATENT]), LATENT)
            batches.put(pa.RecordBatch.from_arrays([batch.column(0), embedding], schema=schema))
            del batch  # as the engine does, so a row group is freed before the next read
    finally:
        batches.put(None)
        writer.join()
    if failures:
        raise failures[0]
    return time.perf_counter() - started


def current_rss_mb() -> float:
    """This process's resident set now (Linux), in MiB; NaN elsewhere."""
    try:
        resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return float("nan")
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """This process's peak resident set in MiB: ``VmHWM`` on Linux.

    ``ru_maxrss`` would do elsewhere, but on Linux it carries the parent's peak into a
    child started through vfork/exec, so the workers all reported the parent's.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(engine: str, source: Path, target: Path, bundle_dir: Path, device: torch.device) -> None:
    """One measured run in this (fresh) process; prints seconds and peak RSS as JSON."""
    if engine == "aeops":
        predictor, spec = read_bundle(bundle_dir, device)
        bundle = LoadedBundle(predictor, spec, {"model_uri": "bench", "latent_dim": str(LATENT)})
        job = EmbedJob(TableSource(source), bundle, batch_rows=BATCH_ROWS)
        run: Callable[[], Any] = functools.partial(job.run, target)
        validation = bool(job.bundle.spec.validation_suite)
    else:
        run, validation = functools.partial(limit, source, target), False
    if engine == "aeops":
        # The model's first encode loads its math libraries (on a GPU, the CUDA context
        # and cuBLAS: hundreds of MB of host memory), so they count in the RSS before
        # the run, and peak minus before is what streaming the input costs. The limit,
        # which runs no model, never loads them.
        predictor.embed_samples(np.zeros((1, N_FEATURES), np.float32))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    rss_before_mb = current_rss_mb()
    started = time.perf_counter()
    timed = run()  # the limit times itself, leaving out making its values
    seconds = timed if isinstance(timed, float) else time.perf_counter() - started
    peak_mb = peak_rss_mb()
    rows = pq.ParquetFile(target).metadata.num_rows
    result = {
        "seconds": seconds,
        "peak_rss_mb": peak_mb,
        "rss_before_mb": rss_before_mb,
        "rows": rows,
        "validation": validation,
        "output_mb": target.stat().st_size / 2**20,
    }
    os.write(1, (json.dumps(result) + "\n").encode())


def measured(
    engine: str, source: Path, target: Path, bundle_dir: Path, device: str
) -> dict[str, Any]:
    """Run ``engine`` in a fresh worker process and return what it measured."""
    command = [sys.executable, __file__, "--worker", engine, "--source", str(source)]
    command += ["--bundle", str(bundle_dir)]
    command += ["--target", str(target), "--device", device]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return dict(json.loads(output.strip().splitlines()[-1]))


class _StoppedError(Exception):
    """Raised in the main thread when the run gets SIGTERM (a ``timeout``)."""


def _stop(signum: int, frame: Any) -> None:
    # `timeout` signals the process, then its group: only the first may unwind.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise _StoppedError


def _row(rows: int, best: dict[str, dict[str, Any]], peak: dict[str, float]) -> dict[str, Any]:
    """One size's table row: each engine's fastest run, and its highest peak RSS."""
    row = {
        "rows": rows,
        "limit_rows_per_s": rows / best["limit"]["seconds"],
        "aeops_rows_per_s": rows / best["aeops"]["seconds"],
        "limit_peak_rss_mb": peak["limit"],
        "aeops_peak_rss_mb": peak["aeops"],
        "limit_rss_before_mb": best["limit"]["rss_before_mb"],
        "aeops_rss_before_mb": best["aeops"]["rss_before_mb"],
        "validation": best["aeops"]["validation"],
        "limit_output_mb": best["limit"]["output_mb"],
        "aeops_output_mb": best["aeops"]["output_mb"],
    }
    row["aeops_over_limit"] = row["aeops_rows_per_s"] / row["limit_rows_per_s"]
    return row


def main() -> None:
    """Run every size and print the table and the summary line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--worker", choices=["limit", "aeops"], help=argparse.SUPPRESS)
    parser.add_argument("--source", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--target", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--bundle", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.worker:
        worker(args.worker, args.source, args.target, args.bundle, device)
        return
    results: list[dict[str, Any]] = []
    # A timeout (SIGTERM) unwinds, so the generated input (GBs) is removed, and the
    # table still gets the runs measured so far.
    signal.signal(signal.SIGTERM, _stop)
    stopped = False
    with tempfile.TemporaryDirectory(prefix="aeops-embed-bench-") as temp:
        folder = Path(temp)
        for rows in args.rows:
            best: dict[str, dict[str, Any]] = {}
            peak: dict[str, float] = {}  # the highest of every run, not the fastest run's
            runs: list[dict[str, Any]] = []
            try:
                source = folder / f"in-{rows}.parquet"
                generate(source, rows)
                bundle_dir = write_bench_bundle(source, folder / f"bundle-{rows}")
                for _ in range(args.repeats):  # alternate, so a busy neighbour hurts both
                    for name in ("limit", "aeops"):
                        run = measured(
                            name, source, folder / f"{name}.parquet", bundle_dir, args.device
                        )
                        assert run["rows"] == rows, run
                        runs.append(run)
                        if name not in best or run["seconds"] < best[name]["seconds"]:
                            best[name] = run
                        peak[name] = max(peak.get(name, 0.0), run["peak_rss_mb"])
            except _StoppedError:
                stopped = True
            if len(best) == 2:  # a stopped size counts once both engines have run
                results.append({**_row(rows, best, peak), "runs_per_engine": len(runs) // 2})
            if stopped:
                break
            source.unlink()
    if stopped:
        done = ", ".join(f"{r['rows']:,} rows: {r['runs_per_engine']}" for r in results)
        message = f"stopped by SIGTERM: runs per engine of {args.repeats}: {done or 'none'}\n"
        os.write(1, message.encode())
    if not results:
        sys.exit(124)
    header = (
        "| rows | limit rows/s | aeops rows/s | aeops/limit | peak RSS MB (limit, aeops) "
        "| RSS MB before the run (limit, aeops) | output MB (limit, aeops) |"
    )
    lines = [header, "|---:|---:|---:|---:|---|---|---|"]
    for r in results:
        lines.append(
            f"| {r['rows']:,} | {r['limit_rows_per_s']:,.0f} | {r['aeops_rows_per_s']:,.0f} | "
            f"{r['aeops_over_limit']:.2f} | "
            f"{r['limit_peak_rss_mb']:.0f}, {r['aeops_peak_rss_mb']:.0f} | "
            f"{r['limit_rss_before_mb']:.0f}, {r['aeops_rss_before_mb']:.0f} | "
            f"{r['limit_output_mb']:.0f}, {r['aeops_output_mb']:.0f} |"
        )
    info = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"device {device}, torch {torch.__version__}"
    )
    report = "\n".join([info, *lines])
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "results": results}, indent=2))
    largest = max(results, key=lambda r: r["rows"])
    checks = "" if largest["validation"] else " (no suite checks: no Great Expectations here)"
    summary = (
        f"embed_throughput aeops/limit={largest['aeops_over_limit']:.2f} "
        f"peak_rss_mb={largest['aeops_peak_rss_mb']:.0f}{checks}"
    )
    for line in (report, summary):
        os.write(1, (line + "\n").encode())


if __name__ == "__main__":
    main()
