"""Training throughput: PyOD's AutoEncoder, a bare PyTorch loop and aeops, in one process.

All three train the same network on the same data: PyOD's default AutoEncoder,
d -> 64 -> 32 -> 64 -> d with batch norm, ReLU and dropout 0.2, MSE, Adam at lr 1e-3,
on rows of 64 float32 columns. The figure is training samples per second
(rows x epochs / wall seconds):

- ``pyod``: ``pyod.models.auto_encoder.AutoEncoder(...).fit`` at its defaults (batch 32,
  a per-sample Dataset and DataLoader, ``loss.item()`` every step; ``verbose=0`` only to
  keep the output clean). Its samples/s counts its training loop only; the whole
  ``fit`` (which also scores the training rows) is shown beside it. Its loop handles
  one sample at a time, so its rate does not depend on the set's size: it trains on
  at most ``--pyod-samples`` rows x epochs (the first rows of each size, fewer epochs
  at the larger sizes) to keep the run short.
- ``bare``: the reference, a hand-written loop with the data resident on the device
  and index-sliced batches (``randperm``), fused Adam (CPU and CUDA) and bf16 autocast
  on CUDA.
- ``aeops``: ``aeops.training.fit`` at its defaults (only ``epochs``, and ``batch_size``
  when a size other than the default 4096 is asked for, are set). Its time includes
  everything ``fit`` does: moving data to the device, a validation pass over a
  further 10% of rows every epoch, and early-stopping bookkeeping.

Bare and aeops run back to back ``--repeats`` times per size, taking turns to go
first. The table shows the pair with the median aeops/bare ratio (its two runs, so the
columns and the ratio agree) and the range over all pairs; a noisy neighbour on a
shared machine (or one odd run) moves the median little. SIGTERM (a ``timeout``)
still prints the table of the runs so far and writes the JSON. The run ends with

    train_throughput aeops/pyod=X aeops/bare=Y

for the largest size at the first batch size. Usage::

    python bench/train_throughput.py                       # CPU defaults, ~5 min on 2 cores
    python bench/train_throughput.py --batch-sizes 4096 65536 --json results.json  # a GPU
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import platform
import signal
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aeops.models import Autoencoder, ModelConfig
from aeops.training import TrainingConfig, fit, resolve_device, resolve_precision

N_FEATURES = 64
HIDDEN = (64, 32)
DROPOUT = 0.2
LR = 1e-3


@dataclass
class Measurement:
    """One timed training run."""

    engine: str
    rows: int
    batch_size: int
    epochs: int
    seconds: float
    samples_per_second: float
    note: str = ""
    repeat: int = 0  # which back-to-back bare/aeops pair the run belongs to


# Data and network ------------------------------------------------------------------------


def make_data(rows: int, seed: int = 0) -> np.ndarray:
    """Standardised rows of 64 correlated columns (8 latent factors plus noise), float32."""
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(8, N_FEATURES))
    values = rng.normal(size=(rows, 8)) @ mixing + 0.3 * rng.normal(size=(rows, N_FEATURES))
    values -= values.mean(axis=0)
    values /= values.std(axis=0)
    return values.astype(np.float32)


def _block(width_in: int, width_out: int) -> list[nn.Module]:
    """PyOD's LinearBlock: linear, batch norm, activation, dropout."""
    return [
        nn.Linear(width_in, width_out),
        nn.BatchNorm1d(width_out),
        nn.ReLU(),
        nn.Dropout(DROPOUT),
    ]


def pyod_network(n_features: int) -> tuple[nn.Sequential, nn.Sequential]:
    """Encoder and decoder of PyOD's default AutoEncoder for ``n_features`` columns."""
    encoder = nn.Sequential(*_block(n_features, HIDDEN[0]), *_block(HIDDEN[0], HIDDEN[1]))
    decoder = nn.Sequential(*_block(HIDDEN[1], HIDDEN[0]), nn.Linear(HIDDEN[0], n_features))
    return encoder, decoder


def autocast(
    device: torch.device, dtype: torch.dtype | None
) -> contextlib.AbstractContextManager[object]:
    """bf16 autocast where aeops's ``auto`` would use it, else nothing."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# The three engines -------------------------------------------------------------------------


def run_bare(train: np.ndarray, batch_size: int, epochs: int, device: torch.device) -> Measurement:
    """The reference loop: resident data, index batches, no host sync per step."""
    torch.manual_seed(0)
    encoder, decoder = pyod_network(train.shape[1])
    model = nn.Sequential(encoder, decoder).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR, fused=True)
    dtype = resolve_precision("auto", device)
    _synchronize(device)
    started = time.perf_counter()
    x = torch.from_numpy(train).to(device)
    n = x.shape[0]
    model.train()
    for _ in range(epochs):
        order = torch.randperm(n, device=device)
        for start in range(0, n, batch_size):
            batch = x[order[start : start + batch_size]]
            with autocast(device, dtype):
                loss = F.mse_loss(model(batch), batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    _synchronize(device)
    seconds = time.perf_counter() - started
    return Measurement("bare", n, batch_size, epochs, seconds, n * epochs / seconds)


def run_aeops(
    train: np.ndarray,
    validation: np.ndarray,
    batch_size: int,
    epochs: int,
    device: torch.device,
) -> Measurement:
    """aeops's engine at its defaults, on the same network wrapped in the model contract."""
    torch.manual_seed(0)
    encoder, decoder = pyod_network(train.shape[1])
    config = ModelConfig(architecture="mlp", latent_dim=HIDDEN[-1], hidden_dims=HIDDEN[:1])
    model = Autoencoder(encoder, decoder, config)
    changes: dict[str, object] = {"epochs": epochs, "progress": False}
    if batch_size != TrainingConfig().batch_size:
        changes["batch_size"] = batch_size
    training = TrainingConfig.model_validate(changes)
    _synchronize(device)
    started = time.perf_counter()
    result = fit(model, train, validation, training)
    _synchronize(device)
    seconds = time.perf_counter() - started
    n = train.shape[0]
    note = f"{result.device}, +{validation.shape[0]:,} validation rows per epoch"
    return Measurement("aeops", n, batch_size, epochs, seconds, n * epochs / seconds, note)


def run_pyod(train: np.ndarray, epochs: int, size: int) -> Measurement:
    """PyOD 3.x AutoEncoder.fit at its defaults; samples/s over its training loop.

    ``train`` may be the first rows of a set of ``size`` rows: the table row is that
    size's, and the note says how many rows PyOD trained on.
    """
    from pyod.models.auto_encoder import AutoEncoder
    from pyod.utils.stat_models import pairwise_distances_no_broadcast

    # Compile PyOD's numba scoring kernel before the clock starts; it is not training.
    warm = np.zeros((2, train.shape[1]), dtype=train.dtype)
    pairwise_distances_no_broadcast(warm, warm + 1)

    class TimedAutoEncoder(AutoEncoder):  # type: ignore[misc]
        training_seconds = math.nan

        def train(self, train_loader: object) -> None:
            started = time.perf_counter()
            super().train(train_loader)
            self.training_seconds = time.perf_counter() - started

    detector = TimedAutoEncoder(epoch_num=epochs, verbose=0)
    started = time.perf_counter()
    detector.fit(train)
    fit_seconds = time.perf_counter() - started
    n = train.shape[0]
    seconds = detector.training_seconds
    note = f"whole fit {fit_seconds:.1f} s = {n * epochs / fit_seconds:,.0f} samples/s"
    if n < size:
        note = f"first {n:,} rows; {note}"
    return Measurement("pyod", size, 32, epochs, seconds, n * epochs / seconds, note)


# Reporting -------------------------------------------------------------------------------


def others_busy_fraction(seconds: float = 1.0) -> float:
    """Share of CPU time other processes use while this one sleeps (Linux), else 0.

    Read before the runs start: on a shared machine a neighbour's job slows every
    engine, PyOD's one-sample-at-a-time loop most, so the table records it.
    """
    stat = Path("/proc/stat")
    if not stat.exists():
        return 0.0

    def totals() -> tuple[int, int]:
        fields = [int(v) for v in stat.read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return idle, sum(fields)

    idle_a, total_a = totals()
    time.sleep(seconds)
    idle_b, total_b = totals()
    elapsed = total_b - total_a
    return 1.0 - (idle_b - idle_a) / elapsed if elapsed > 0 else 0.0


def machine_description(device: torch.device) -> dict[str, str]:
    """CPU model, cores, torch version, the accelerator and how busy the machine was."""
    cpu = platform.processor() or "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info = {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "torch": torch.__version__,
        "torch_threads": str(torch.get_num_threads()),
        "device": str(device),
        "busy_before_start": f"{others_busy_fraction():.0%}",
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = str(torch.version.cuda)
    try:
        import pyod

        info["pyod"] = pyod.__version__
    except ImportError:
        info["pyod"] = "not installed"
    return info


def median_pair(
    measurements: list[Measurement], rows: int, batch: int
) -> tuple[Measurement, Measurement, list[float]] | None:
    """The bare and aeops runs of the pair with the median aeops/bare ratio (the lower
    one for an even count), and every pair's ratio, sorted; None without pairs.

    The two runs of a pair are back to back, so a slow spell on a shared machine (or a
    GPU clock change) lands on both; showing one whole pair keeps the table's columns
    and its ratio the same numbers.
    """
    pairs: dict[int, dict[str, Measurement]] = {}
    for m in measurements:
        if m.rows == rows and m.batch_size == batch and m.engine in ("bare", "aeops"):
            pairs.setdefault(m.repeat, {})[m.engine] = m
    whole = [(p["bare"], p["aeops"]) for p in pairs.values() if len(p) == 2]
    if not whole:
        return None
    whole.sort(key=lambda pair: pair[1].samples_per_second / pair[0].samples_per_second)
    bare, aeops = whole[(len(whole) - 1) // 2]
    ratios = [a.samples_per_second / b.samples_per_second for b, a in whole]
    return bare, aeops, ratios


def _pyod_at(measurements: list[Measurement], rows: int) -> Measurement | None:
    return next((m for m in measurements if m.engine == "pyod" and m.rows == rows), None)


def table(measurements: list[Measurement]) -> str:
    """A Markdown table: PyOD's run and the median bare/aeops pair at each size and batch."""
    lines = [
        "| rows | engine | batch | epochs | seconds | samples/s | aeops/pyod | aeops/bare "
        "| all pairs | note |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]

    def row(m: Measurement, vs_pyod: str = "", vs_bare: str = "", spread: str = "") -> str:
        return (
            f"| {m.rows:,} | {m.engine} | {m.batch_size:,} | {m.epochs} | {m.seconds:.2f} | "
            f"{m.samples_per_second:,.0f} | {vs_pyod} | {vs_bare} | {spread} | {m.note} |"
        )

    sizes = sorted({m.rows for m in measurements})
    batches = sorted({m.batch_size for m in measurements if m.engine != "pyod"})
    for rows in sizes:
        pyod = _pyod_at(measurements, rows)
        if pyod is not None:
            lines.append(row(pyod))
        for batch in batches:
            found = median_pair(measurements, rows, batch)
            if found is None:
                continue
            bare, aeops, ratios = found
            ratio = aeops.samples_per_second / bare.samples_per_second
            vs_pyod = f"{aeops.samples_per_second / pyod.samples_per_second:.1f}" if pyod else ""
            spread = f"{ratios[0]:.2f} to {ratios[-1]:.2f} ({len(ratios)})"
            lines += [row(bare), row(aeops, vs_pyod, f"{ratio:.2f}", spread)]
    return "\n".join(lines)


def ratio_line(measurements: list[Measurement], rows: int, batch_size: int) -> str:
    """``aeops/pyod=X aeops/bare=Y`` for one size, from the median pair of :func:`table`."""
    found = median_pair(measurements, rows, batch_size)
    if found is None:
        return "aeops/pyod=n/a aeops/bare=n/a"
    bare, aeops, _ = found
    pyod = _pyod_at(measurements, rows)
    pyod_text = f"{aeops.samples_per_second / pyod.samples_per_second:.1f}" if pyod else "n/a"
    vs_bare = aeops.samples_per_second / bare.samples_per_second
    return f"aeops/pyod={pyod_text} aeops/bare={vs_bare:.2f}"


# Main ------------------------------------------------------------------------------------


def say(text: str) -> None:
    """Print a line at once, so progress shows even through a pipe."""
    print(text, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[4096])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument(
        "--pyod-samples",
        type=int,
        default=100_000,
        help="PyOD trains on the first min(rows, this) rows of each size, for "
        "max(1, min(epochs, this // those rows)) epochs",
    )
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of bare/aeops")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--skip-pyod", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = resolve_device(args.device)
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # PyOD picks CUDA on its own otherwise
    machine = machine_description(device)
    run_pyod_too = not args.skip_pyod and machine["pyod"] != "not installed"
    say("machine: " + ", ".join(f"{k}={v}" for k, v in machine.items()))
    if float(machine["busy_before_start"].rstrip("%")) > 25:
        say("warning: other processes keep the CPUs busy; the numbers will be noisy")

    largest = max(args.sizes)
    data = make_data(largest)
    validation_all = make_data(max(1, largest // 10), seed=1)
    # Untimed warm-up: first calls pay for allocator growth, thread pools and kernel
    # selection, which would otherwise land on whichever engine runs first. Enough
    # rows for a whole batch of each size (fit caps the batch at the row count).
    warm_rows = min(largest, max(10_000, *args.batch_sizes))
    for batch_size in args.batch_sizes:  # kernels are chosen per shape on CUDA
        run_bare(data[:warm_rows], batch_size, 1, device)
        run_aeops(data[:warm_rows], validation_all[:1000], batch_size, 1, device)

    measurements: list[Measurement] = []
    # A timeout (SIGTERM) still gets the table of what was measured, and the JSON.
    signal.signal(signal.SIGTERM, _stop)
    try:
        measure(args, data, validation_all, device, run_pyod_too, measurements)
    except _StoppedError:
        say("stopped by SIGTERM: the table holds the runs measured so far")
    finally:
        say("")
        say(table(measurements))
        say("")
        if args.json is not None:
            payload = {"machine": machine, "measurements": [asdict(m) for m in measurements]}
            args.json.write_text(json.dumps(payload, indent=2))
    for batch_size in args.batch_sizes[1:]:
        say(f"train_throughput[batch={batch_size}] {ratio_line(measurements, largest, batch_size)}")
    say(f"train_throughput {ratio_line(measurements, largest, args.batch_sizes[0])}")
    return 0


class _StoppedError(Exception):
    """Raised in the main thread when the run gets SIGTERM (a ``timeout``)."""


def _stop(signum: int, frame: object) -> None:
    # `timeout` signals the process, then its group: only the first may unwind.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise _StoppedError


def measure(
    args: argparse.Namespace,
    data: np.ndarray,
    validation_all: np.ndarray,
    device: torch.device,
    run_pyod_too: bool,
    measurements: list[Measurement],
) -> None:
    """Run every size, appending to ``measurements`` as each run ends."""
    for rows in sorted(args.sizes):
        train = data[:rows]
        validation = validation_all[: max(1, rows // 10)]
        if run_pyod_too:
            pyod_rows = min(rows, args.pyod_samples)
            pyod_epochs = max(1, min(args.epochs, args.pyod_samples // pyod_rows))
            m = run_pyod(train[:pyod_rows], pyod_epochs, rows)
            measurements.append(m)
            say(f"{rows:>9,} pyod  batch 32: {m.samples_per_second:>12,.0f} samples/s ({m.note})")
        for batch_size in args.batch_sizes:
            for repeat in range(args.repeats):
                engines = [
                    functools.partial(run_bare, train, batch_size, args.epochs, device),
                    functools.partial(
                        run_aeops, train, validation, batch_size, args.epochs, device
                    ),
                ]
                if repeat % 2:  # bare first, then aeops first: no engine owns a position
                    engines.reverse()
                for engine in engines:
                    m = replace(engine(), repeat=repeat)
                    measurements.append(m)
                    say(
                        f"{rows:>9,} {m.engine:<5} batch {batch_size}: "
                        f"{m.samples_per_second:>12,.0f} samples/s"
                    )


if __name__ == "__main__":
    sys.exit(main())
