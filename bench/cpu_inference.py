"""The predictor's inference on the CPU against bare PyTorch, in one process.

``aeops.scoring.Predictor`` runs every CPU answer of evaluation, the batch jobs and
the served model. On the CPU its linear layers run on oneDNN where torch has it, and
every batch is padded so that a sample gets the same bits in any batch (see
``aeops.scoring._cpu_linear`` and ``Predictor._answer_all``). The reference is the
same network called the usual way: ``model.encode`` (embeddings) or
``model.elementwise_scores`` (embeddings, and each row's mean error: what the score
job writes) under ``torch.inference_mode`` on row-major batches of the same size, each
answer brought back as a numpy array. The predictor also runs kept on ``F.linear``, as it does
where torch has no oneDNN.

The predictor gets the samples twice: row-major, and column-major as the batch jobs'
reader makes them. On oneDNN it makes those row-major itself (the batch jobs do it in
their reader thread), and that copy is in its time. All three give the same answers
within float32 rounding (every output, both layouts, checked before timing). Rows
per second, best of ``--repeats``, the engines taking turns. The last line is for the
first network on column-major samples: ``cpu_inference predictor/bare embed=X score=Y``.

    python bench/cpu_inference.py                  # 1M samples, 1 thread (as a job on 2 cores)
    python bench/cpu_inference.py --threads 2 --json out.json
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import torch

from aeops.data import TabularInputs, fit_scaler
from aeops.models import Autoencoder, ModelConfig, build_model
from aeops.scoring import Predictor
from aeops.scoring import _predictor as predictor_module
from aeops.scoring._cpu_linear import onednn_linear_available

BATCH = 4096
# (features, hidden layers, latent): the embedding benchmark's network, and one sized
# for flattened 28 x 28 images.
NETWORKS = [(64, (64, 32), 16), (784, (128, 32), 8)]


def bare(model: Autoencoder, samples: np.ndarray, scores: bool) -> list[np.ndarray]:
    """The reference: the model's own methods on row-major batches."""
    answers = []
    with torch.inference_mode():
        for start in range(0, len(samples), BATCH):
            batch = torch.from_numpy(samples[start : start + BATCH])
            if scores:
                embedding, elementwise = model.elementwise_scores(batch)
                row_scores = elementwise.numpy().mean(axis=1, dtype=np.float64)
                answers += [embedding.numpy(), row_scores]
            else:
                answers.append(model.encode(batch).numpy())
    return answers


def _score_samples(predictor: Predictor, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings and row scores, as the score job asks the predictor for them."""
    return predictor.score_samples(samples, len(samples))


def on_f_linear(work: Callable[[np.ndarray], Any], samples: np.ndarray) -> Any:
    """``work`` with the predictor kept on ``F.linear``, as where oneDNN is missing."""
    with mock.patch.object(predictor_module, "onednn_linear_available", lambda: False):
        return work(samples)


def rate(rows: int, work: Callable[[], Any]) -> float:
    """Rows per second of one call of ``work``."""
    started = time.perf_counter()
    work()
    return rows / (time.perf_counter() - started)


def measure(features: int, hidden: tuple[int, ...], latent: int, args: Any) -> list[dict]:
    """Both engines on one network, per task and sample layout."""
    torch.manual_seed(0)
    config = ModelConfig(architecture="mlp", latent_dim=latent, hidden_dims=hidden, dropout=0)
    model = build_model(config, (features,)).eval()
    columns = [f"x{i}" for i in range(features)]
    values = np.random.default_rng(0).normal(size=(args.rows, features)).astype(np.float32)
    scaler = fit_scaler(values[:10_000], columns, "robust")
    predictor = Predictor(model, TabularInputs(tuple(columns)), scaler, batch_size=BATCH)
    layouts = {"row-major": values, "column-major": np.asfortranarray(values)}
    results = []
    for task, scores in (("embed", False), ("score", True)):
        ours: Callable[[np.ndarray], Any] = predictor.embed_samples
        if scores:  # as the score job asks: embeddings and each row's score
            ours = functools.partial(_score_samples, predictor)
        check = 4 * BATCH  # the same answers, every output, within float32 rounding
        answers = bare(model, values[:check], scores)  # per batch: (embeddings[, errors])
        outputs = 2 if scores else 1
        expected = [np.concatenate(answers[i::outputs]) for i in range(outputs)]
        for samples in layouts.values():
            got = ours(samples[:check])
            for mine, reference in zip(got if scores else [got], expected, strict=True):
                np.testing.assert_allclose(mine, reference, rtol=1e-4, atol=1e-5)
        for layout, samples in layouts.items():
            engines: dict[str, Callable[[], Any]] = {
                "bare": functools.partial(bare, model, values, scores),
                "f.linear": functools.partial(on_f_linear, ours, samples),
                "predictor": functools.partial(ours, samples),
            }
            rates = dict.fromkeys(engines, 0.0)
            for _ in range(args.repeats):  # taking turns, so a busy neighbour hurts both
                for name, work in engines.items():
                    rates[name] = max(rates[name], rate(args.rows, work))
            results.append(
                {
                    "network": f"{features} -> {' -> '.join(map(str, hidden))} -> {latent}",
                    "task": task,
                    "layout": layout,
                    "bare_rows_per_s": rates["bare"],
                    "f_linear_rows_per_s": rates["f.linear"],
                    "predictor_rows_per_s": rates["predictor"],
                    "f_linear_over_bare": rates["f.linear"] / rates["bare"],
                    "predictor_over_bare": rates["predictor"] / rates["bare"],
                }
            )
    return results


def main() -> None:
    """Measure every network and print the table and the summary line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = []
    for features, hidden, latent in NETWORKS:
        rows = args.rows if features <= 64 else max(1, args.rows // 8)
        results += measure(
            features, hidden, latent, argparse.Namespace(**{**vars(args), "rows": rows})
        )
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{args.threads} torch thread(s), torch {torch.__version__}, "
        f"oneDNN linear {'on' if onednn_linear_available() else 'off'}"
    )
    print(
        "| network | task | samples | bare rows/s | predictor on F.linear rows/s "
        "| predictor rows/s | on F.linear/bare | predictor/bare |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['network']} | {r['task']} | {r['layout']} | {r['bare_rows_per_s']:,.0f} | "
            f"{r['f_linear_rows_per_s']:,.0f} | {r['predictor_rows_per_s']:,.0f} | "
            f"{r['f_linear_over_bare']:.2f} | {r['predictor_over_bare']:.2f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    first = {r["task"]: r for r in results[:4] if r["layout"] == "column-major"}
    print(
        f"cpu_inference predictor/bare embed={first['embed']['predictor_over_bare']:.2f} "
        f"score={first['score']['predictor_over_bare']:.2f}"
    )


if __name__ == "__main__":
    main()
