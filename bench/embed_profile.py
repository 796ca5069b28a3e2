"""Where the embedding job's time and memory go: each stage alone, then the whole job.

``embed_throughput.py`` gives the one ratio that matters (the job against the I/O
limit); this script says which stage holds the job back on a given machine. On
generated Parquet (as the benchmark's) it times, in rows per second over the file:

- ``read``: the engine's record batches alone;
- ``read+prepare``: those batches checked and scaled by the Arrow fast path, in one
  thread, as the job's reader thread does;
- ``model``: the encoder and the output column on prepared batches, per chunk size
  (the predictor's batch size: rows per encoder call; ``auto`` is its default);
- ``write``: the output batches into Parquet;
- ``job``: the whole ``EmbedJob``, per chunk size, and the limit beside it.

and the resident set at each step (after the imports, with the model on its device,
after a first encode, and the peak). One process: its figures are for comparing
stages, not the benchmark's per-process peaks.

    python bench/embed_profile.py --rows 2000000 --chunks auto 4096 65536
    python bench/embed_profile.py --output scores   # the score job (the limit stays the
                                                    # embedding job's output)
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from aeops.bundle import LoadedBundle, read_bundle
from aeops.embedding import EmbedJob, TableSource
from aeops.embedding._arrow_tabular import ArrowTabularPath
from aeops.embedding._engine import _Prepared
from aeops.embedding._output import PARQUET_WRITE_OPTIONS
from aeops.embedding._source import parquet_batches

sys.path.insert(0, str(Path(__file__).parent))
from embed_throughput import (  # the benchmark's data and bundle
    BATCH_ROWS,
    LATENT,
    current_rss_mb,
    generate,
    limit,
    peak_rss_mb,
    write_bench_bundle,
)


def rate(rows: int, work: Callable[[], Any]) -> float:
    """Rows per second of one call of ``work``, the GPU's queue included."""
    started = time.perf_counter()
    work()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return rows / (time.perf_counter() - started)


def main() -> None:
    """Time each stage and the job; print (and optionally save) the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument(
        "--chunks",
        type=lambda value: None if value == "auto" else int(value),
        nargs="+",
        default=[None, 4096],
        help="rows per encoder call to time; auto: the predictor's own choice",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--output",
        choices=["embeddings", "scores"],
        default="embeddings",
        help="the job's output: embeddings (the encoder) or scores (encoder, decoder, errors)",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    device = torch.device(args.device)
    rss = {"imports": current_rss_mb()}
    rates: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="aeops-embed-profile-") as temp:
        folder = Path(temp)
        source = folder / "in.parquet"
        generate(source, args.rows)
        predictor, spec = read_bundle(write_bench_bundle(source, folder / "bundle"), device)
        rss["model_on_device"] = current_rss_mb()
        probe = np.zeros((BATCH_ROWS, predictor.scaler.center.shape[0]), np.float32)
        predictor.embed_samples(probe)  # the GPU's math libraries load here
        rss["after_first_encode"] = current_rss_mb()
        bundle = LoadedBundle(predictor, spec, {"model_uri": "bench", "latent_dim": str(LATENT)})
        job = EmbedJob(TableSource(source), bundle, output=args.output, batch_rows=BATCH_ROWS)
        schema = job.output_schema(pa.int64())

        def batches() -> Iterator[pa.RecordBatch]:
            return parquet_batches(source, BATCH_ROWS)

        kept: list[_Prepared] = []

        def prepare_all(fast: ArrowTabularPath) -> None:
            for index, batch in enumerate(batches()):
                ready = fast.prepare(batch, index * BATCH_ROWS)
                assert ready is not None
                if len(kept) < 4:
                    kept.append(
                        _Prepared(ready.n_rows, ready.n_rows, ready.ids, ready.samples, None)
                    )

        rates["read"] = rate(args.rows, lambda: sum(1 for _ in batches()))
        fast = ArrowTabularPath.for_bundle(predictor, None, spec.id_column)
        assert fast is not None
        rates["read+prepare"] = rate(args.rows, functools.partial(prepare_all, fast))
        n_batches = -(-args.rows // BATCH_ROWS)
        answers = [job._answers(prepared, schema) for prepared in kept]
        for chunk in args.chunks:
            predictor.batch_size = chunk
            rates[f"model, chunk {chunk or 'auto'}"] = rate(
                n_batches * BATCH_ROWS,
                lambda: [job._answers(kept[i % len(kept)], schema) for i in range(n_batches)],
            )

        def write_all() -> None:
            with pq.ParquetWriter(folder / "w.parquet", schema, **PARQUET_WRITE_OPTIONS) as out:
                for index in range(n_batches):
                    out.write_batch(answers[index % len(answers)])

        rates["write"] = rate(n_batches * BATCH_ROWS, write_all)
        for _ in range(2):  # best of two, alternating
            seconds = limit(source, folder / "limit.parquet")
            rates["limit"] = max(rates.get("limit", 0.0), args.rows / seconds)
            for chunk in args.chunks:
                predictor.batch_size = chunk
                job_rate = rate(args.rows, lambda: job.run(folder / "out.parquet"))
                name = f"job, chunk {chunk or 'auto'}"
                rates[name] = max(rates.get(name, 0.0), job_rate)
    rss["peak"] = peak_rss_mb()
    machine = f"{os.cpu_count()} cores, device {device}, torch {torch.__version__}"
    report = {
        "machine": machine,
        "rows": args.rows,
        "output": args.output,
        "rss_mb": rss,
        "rows_per_s": rates,
    }
    text = json.dumps(report, indent=2)
    os.write(1, (text + "\n").encode())
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
