"""Detection quality: aeops's default kinds against PyOD and IsolationForest.

Read from ``../shared/benchdata`` (never copied into the repository):

- **tabular**: the eight ADBench tables. Per table and seed (0, 1, 2): a stratified
  70/30 split; every detector fits on the 70% without labels; AUROC on the 30%. Side by
  side: PyOD's ``AutoEncoder`` and ``VAE`` at their defaults (``verbose=0`` aside),
  PyOD's ``IForest``, and aeops's vanilla, denoising, sparse and vae kinds.
- **series**: the recurrent (LSTM) autoencoder on the four NAB series and the SMAP
  A-1 / MSL C-1 channels; per-timestamp AUROC against the labelled windows. NAB has no
  training split, so aeops fits on the first half of each series (labels unused) and
  every time step is scored; SMAP/MSL fit on the channel's train array and score its
  test array. IsolationForest on the same windows (a step's score is the mean of the
  windows covering it, as aeops's) is the reference.
- **images**: the conv autoencoder on MNIST one-class: each digit in turn is the
  normal class; a stratified 70/30 split of the 10k test images (seed 0), fit on the
  normal digit's images in the 70%, AUROC over all digits in the 30%. IsolationForest
  on the flattened pixels is the reference.

aeops runs at its shipped defaults: the parameter files in ``conf/base`` (and
``conf/timeseries`` or ``conf/images`` for those kinds, overriding base per top-level
key as Kedro does), with only ``model.kind`` set. Early stopping uses a validation
share of the training rows (``data.split.validation`` of the whole, as the pipeline
does), never labels. The threshold does not enter AUROC.

The run ends with::

    quality aeops_best=X pyod_ae=Y pyod_vae=Z iforest=W

(tabular means over the eight sets; aeops_best is the best kind's mean). Usage::

    pip install -e ".[bench]"
    python bench/quality.py                       # everything, ~30-65 min on 2 CPU cores
    python bench/quality.py --parts tabular --datasets breastw cardio --seeds 0
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import json
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from aeops.data import (
    DataConfig,
    ScalingConfig,
    fit_input_scaler,
    make_input_spec,
)
from aeops.models import ModelConfig, build_model, resolve_architecture
from aeops.scoring import Predictor
from aeops.training import TrainingConfig, fit, seed_everything

ROOT = Path(__file__).resolve().parents[1]
BENCHDATA = ROOT.parent / "shared" / "benchdata"
TABULAR = (
    "breastw",
    "cardio",
    "mammography",
    "optdigits",
    "pendigits",
    "satellite",
    "shuttle",
    "thyroid",
)
AEOPS_KINDS = ("vanilla", "denoising", "sparse", "vae")
PEERS = ("pyod_ae", "pyod_vae", "iforest")
NAB_SERIES = (
    "realAWSCloudwatch/ec2_cpu_utilization_5f5533.csv",
    "realAWSCloudwatch/rds_cpu_utilization_cc0c53.csv",
    "realKnownCause/ambient_temperature_system_failure.csv",
    "realKnownCause/nyc_taxi.csv",
)
SMAP_MSL = ("A-1", "C-1")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# aeops at its shipped defaults ----------------------------------------------------------


#: ``--set area.key=value`` overrides, for exploring; the reported runs use none.
OVERRIDES: dict[str, Any] = {}


def shipped_parameters(env: str | None) -> dict[str, Any]:
    """The parameter blocks of ``conf/base``, with ``conf/<env>`` replacing whole keys
    (then any ``--set`` overrides)."""
    parameters: dict[str, Any] = {}
    for folder in ("base", env):
        if folder is None:
            continue
        for path in sorted((ROOT / "conf" / folder).glob("parameters_*.yml")):
            parameters.update(yaml.safe_load(path.read_text()) or {})
    for dotted, value in OVERRIDES.items():
        *path, last = dotted.split(".")
        block = parameters
        for key in path:
            block = block.setdefault(key, {})
        block[last] = value
    return parameters


def aeops_scores(
    env: str | None,
    kind: str,
    train: pd.DataFrame,
    validation: pd.DataFrame,
    scored: pd.DataFrame,
    seed: int,
) -> np.ndarray:
    """Fit aeops's default ``kind`` on ``train`` (early stopping on ``validation``) and
    return the anomaly scores of ``scored``'s rows, exactly as the train pipeline does."""
    parameters = shipped_parameters(env)
    data = DataConfig.model_validate({**parameters["data"], "label_column": None})
    model = ModelConfig.model_validate({**parameters["model"], "kind": kind})
    model = model.model_copy(update={"architecture": resolve_architecture(model, data.kind)})
    training = TrainingConfig.model_validate(
        {**parameters["training"], "seed": seed, "progress": False, "checkpoint_every": 0}
    )
    scaling = ScalingConfig.model_validate(parameters["scaling"])
    spec = make_input_spec(train, data)
    scaler = fit_input_scaler(spec, train, scaling.method)
    seed_everything(seed)
    autoencoder = build_model(model, input_shape=spec.sample_shape)
    fit(autoencoder, spec.samples(train, scaler), spec.samples(validation, scaler), training)
    return Predictor(model=autoencoder, inputs=spec, scaler=scaler).reconstruction_errors(scored)


def validation_share(env: str | None) -> float:
    """The share of the training part the pipeline holds out for early stopping."""
    split = shipped_parameters(env)["data"]["split"]
    return float(split["validation"]) / (1.0 - float(split["test"]))


# Peers ----------------------------------------------------------------------------------


def peer_scores(name: str, train: np.ndarray, test: np.ndarray, seed: int) -> np.ndarray:
    """PyOD's detectors at their defaults (quietly)."""
    from pyod.models.auto_encoder import AutoEncoder
    from pyod.models.iforest import IForest
    from pyod.models.vae import VAE

    factories: dict[str, Callable[[], Any]] = {
        "pyod_ae": lambda: AutoEncoder(verbose=0, random_state=seed),
        "pyod_vae": lambda: VAE(verbose=0, random_state=seed),
        "iforest": lambda: IForest(random_state=seed),
    }
    detector = factories[name]()
    with quiet():
        detector.fit(train)
        return np.asarray(detector.decision_function(test), dtype=np.float64)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence PyOD's progress prints and library warnings."""
    with (
        warnings.catch_warnings(),
        contextlib.redirect_stdout(io.StringIO()),
    ):
        warnings.simplefilter("ignore")
        yield


# Tabular --------------------------------------------------------------------------------


def load_table(name: str) -> tuple[np.ndarray, np.ndarray]:
    """ADBench ``X`` (float64) and ``y`` (0/1) of one table."""
    (path,) = (BENCHDATA / "tabular").glob(f"*_{name}.npz")
    with np.load(path, allow_pickle=False) as archive:
        return archive["X"].astype(np.float64), archive["y"].astype(int)


def to_frame(values: np.ndarray) -> pd.DataFrame:
    frame = pd.DataFrame(values, columns=[f"x{i}" for i in range(values.shape[1])])
    frame.insert(0, "id", np.arange(len(frame)))
    return frame


def run_tabular(datasets: list[str], seeds: list[int], methods: list[str]) -> pd.DataFrame:
    """AUROC per table, seed and method."""
    share = validation_share(None)
    rows = []
    for name in datasets:
        x, y = load_table(name)
        for seed in seeds:
            x_train, x_test, _, y_test = train_test_split(
                x, y, test_size=0.3, stratify=y, random_state=seed
            )
            # Early stopping needs held-out rows; like the pipeline, never labels.
            rng = np.random.default_rng(seed)
            held_out = rng.random(len(x_train)) < share
            fit_frame, validation_frame = to_frame(x_train[~held_out]), to_frame(x_train[held_out])
            test_frame = to_frame(x_test)
            for method in methods:
                started = time.perf_counter()
                if method in PEERS:
                    scores = peer_scores(method, x_train, x_test, seed)
                else:
                    kind = method.removeprefix("aeops_")
                    scores = aeops_scores(None, kind, fit_frame, validation_frame, test_frame, seed)
                seconds = time.perf_counter() - started
                auroc = float(roc_auc_score(y_test, scores))
                rows.append(
                    {"part": "tabular", "dataset": name, "seed": seed, "method": method}
                    | {"auroc": auroc, "seconds": seconds}
                )
                log(f"tabular {name:12s} seed {seed} {method:16s} {auroc:.4f} {seconds:6.1f}s")
    return pd.DataFrame(rows)


# Series ---------------------------------------------------------------------------------


def nab_series(relative: str) -> tuple[pd.DataFrame, np.ndarray]:
    """One NAB series as a frame (id, timestamp, value) and its per-step window labels."""
    base = BENCHDATA / "timeseries" / "nab"
    frame = pd.read_csv(base / "data" / relative, parse_dates=["timestamp"])
    windows = json.loads((base / "labels" / "combined_windows.json").read_text())[relative]
    labels = np.zeros(len(frame), dtype=int)
    for start, end in windows:
        inside = (frame.timestamp >= pd.Timestamp(start)) & (frame.timestamp <= pd.Timestamp(end))
        labels[inside.to_numpy()] = 1
    frame.insert(0, "id", np.arange(len(frame)))
    return frame, labels


def smap_msl_channel(channel: str) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Train and test frames of one channel and the test labels (end index inclusive)."""
    base = BENCHDATA / "timeseries" / "smap_msl"
    catalog = pd.read_csv(base / "labeled_anomalies.csv")
    sequences = json.loads(catalog.set_index("chan_id").loc[channel, "anomaly_sequences"])

    def frame(values: np.ndarray) -> pd.DataFrame:
        out = to_frame(values)
        out.insert(1, "timestamp", pd.date_range("2000-01-01", periods=len(out), freq="min"))
        return out

    train = np.load(base / "train" / f"{channel}.npy")
    test = np.load(base / "test" / f"{channel}.npy")
    labels = np.zeros(len(test), dtype=int)
    for start, end in sequences:
        labels[start : end + 1] = 1
    return frame(train), frame(test), labels


def window_iforest(train: np.ndarray, scored: np.ndarray, length: int, seed: int) -> np.ndarray:
    """IsolationForest on flattened windows (stride 1); each step gets the mean score of
    the windows that cover it, as aeops gives a step the mean error of its windows."""
    from sklearn.ensemble import IsolationForest

    def windows(values: np.ndarray) -> np.ndarray:
        view = np.lib.stride_tricks.sliding_window_view(values, length, axis=0)
        return view.reshape(view.shape[0], -1)

    forest = IsolationForest(random_state=seed).fit(windows(train))
    scores = -forest.score_samples(windows(scored))
    return covering_mean(scores, len(scored), length)


def covering_mean(window_scores: np.ndarray, steps: int, length: int) -> np.ndarray:
    """Each step's mean over the windows (one per start, stride 1) that cover it."""
    totals = np.concatenate([[0.0], np.cumsum(window_scores)])
    step = np.arange(steps)
    first = np.maximum(0, step - length + 1)  # the earliest window covering the step
    last = np.minimum(step, len(window_scores) - 1)  # the latest
    return (totals[last + 1] - totals[first]) / (last - first + 1)


def time_split(frame: pd.DataFrame, share: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The last ``share`` of rows (in time) for early stopping, the rest to fit."""
    cut = round(len(frame) * (1.0 - share))
    return frame.iloc[:cut].reset_index(drop=True), frame.iloc[cut:].reset_index(drop=True)


def run_series() -> pd.DataFrame:
    """Per-timestamp AUROC of the recurrent autoencoder and the IsolationForest reference."""
    share = validation_share("timeseries")
    length = shipped_parameters("timeseries")["data"]["window"]["length"]
    # (name, rows to fit on, rows to score, their labels, the first scored row counted):
    # NAB has no training split, so its series are scored whole (windows need the
    # steps before) and measured on the half after the fitted one only.
    cases: list[tuple[str, pd.DataFrame, pd.DataFrame, np.ndarray, int]] = []
    for relative in NAB_SERIES:
        frame, labels = nab_series(relative)
        half = len(frame) // 2
        cases.append((Path(relative).stem, frame.iloc[:half], frame, labels, half))
    for channel in SMAP_MSL:
        train, test, labels = smap_msl_channel(channel)
        cases.append((channel, train, test, labels, 0))
    rows = []
    for name, train, scored, labels, first in cases:
        fit_part, validation_part = time_split(train, share)
        features = [c for c in scored.columns if c not in ("id", "timestamp")]
        for method in ("aeops_recurrent", "iforest"):
            started = time.perf_counter()
            if method == "iforest":
                train_values = train[features].to_numpy(np.float64)
                scores = window_iforest(train_values, scored[features].to_numpy(), length, 0)
            else:
                scores = aeops_scores("timeseries", "vanilla", fit_part, validation_part, scored, 0)
            seconds = time.perf_counter() - started
            auroc = float(roc_auc_score(labels[first:], scores[first:]))
            rows.append(
                {"part": "series", "dataset": name, "seed": 0, "method": method}
                | {"auroc": auroc, "seconds": seconds}
            )
            log(f"series  {name:36s} {method:16s} {auroc:.4f} {seconds:6.1f}s")
    return pd.DataFrame(rows)


# Images ---------------------------------------------------------------------------------


def mnist() -> tuple[np.ndarray, np.ndarray]:
    """The 10k MNIST test images (N, 28, 28) uint8 and their digits."""
    base = BENCHDATA / "images" / "mnist"
    images = gzip.decompress((base / "t10k-images-idx3-ubyte.gz").read_bytes())
    labels = gzip.decompress((base / "t10k-labels-idx1-ubyte.gz").read_bytes())
    n, rows, cols = np.frombuffer(images[4:16], dtype=">i4")
    pixels = np.frombuffer(images[16:], dtype=np.uint8).reshape(n, rows, cols)
    return pixels, np.frombuffer(labels[8:], dtype=np.uint8).astype(int)


def image_frame(pixels: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"id": np.arange(len(pixels)), "image": list(pixels.astype(np.float32))})


def run_images(digits: list[int]) -> pd.DataFrame:
    """One-class MNIST: AUROC of the conv autoencoder and IsolationForest per digit."""
    from sklearn.ensemble import IsolationForest

    pixels, digit_of = mnist()
    train_idx, test_idx = train_test_split(
        np.arange(len(pixels)), test_size=0.3, stratify=digit_of, random_state=0
    )
    share = validation_share("images")
    test_frame = image_frame(pixels[test_idx])
    rows = []
    for digit in digits:
        normal = train_idx[digit_of[train_idx] == digit]
        labels = (digit_of[test_idx] != digit).astype(int)
        rng = np.random.default_rng(0)
        held_out = rng.random(len(normal)) < share
        for method in ("aeops_conv", "iforest"):
            started = time.perf_counter()
            if method == "iforest":
                flat = pixels.reshape(len(pixels), -1).astype(np.float64)
                forest = IsolationForest(random_state=0).fit(flat[normal])
                scores = -forest.score_samples(flat[test_idx])
            else:
                fit_frame = image_frame(pixels[normal[~held_out]])
                validation_frame = image_frame(pixels[normal[held_out]])
                scores = aeops_scores(
                    "images", "vanilla", fit_frame, validation_frame, test_frame, 0
                )
            seconds = time.perf_counter() - started
            auroc = float(roc_auc_score(labels, scores))
            rows.append(
                {"part": "images", "dataset": f"mnist-{digit}", "seed": 0, "method": method}
                | {"auroc": auroc, "seconds": seconds}
            )
            log(f"images  mnist digit {digit} {method:16s} {auroc:.4f} {seconds:6.1f}s")
    return pd.DataFrame(rows)


# Report ---------------------------------------------------------------------------------


def pivot(results: pd.DataFrame) -> str:
    """Mean AUROC over seeds, datasets as rows and methods as columns, with a mean row."""
    table = results.pivot_table(index="dataset", columns="method", values="auroc", aggfunc="mean")
    table.loc["**mean**"] = table.mean(axis=0)
    columns = [c for c in (*PEERS, *(f"aeops_{k}" for k in AEOPS_KINDS)) if c in table.columns]
    columns += [c for c in table.columns if c not in columns]
    table = table[columns]
    header = "| dataset | " + " | ".join(columns) + " |"
    lines = [header, "|---" + "|---:" * len(columns) + "|"]
    for dataset, row in table.iterrows():
        lines.append(f"| {dataset} | " + " | ".join(f"{v:.3f}" for v in row) + " |")
    return "\n".join(lines)


def summary_line(tabular: pd.DataFrame) -> str:
    means = tabular.groupby(["method", "dataset"]).auroc.mean().groupby("method").mean()
    kinds = [means[f"aeops_{k}"] for k in AEOPS_KINDS if f"aeops_{k}" in means]
    best = max(kinds) if kinds else np.nan  # no aeops kind in this run
    return (
        f"quality aeops_best={best:.4f} pyod_ae={means.get('pyod_ae', np.nan):.4f} "
        f"pyod_vae={means.get('pyod_vae', np.nan):.4f} iforest={means.get('iforest', np.nan):.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", nargs="+", default=["tabular", "series", "images"])
    parser.add_argument("--datasets", nargs="+", default=list(TABULAR))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument(
        "--methods", nargs="+", default=[*PEERS, *(f"aeops_{k}" for k in AEOPS_KINDS)]
    )
    parser.add_argument("--digits", nargs="+", type=int, default=list(range(10)))
    parser.add_argument("--json", type=Path, help="write every measurement here")
    parser.add_argument(
        "--set",
        nargs="+",
        action="extend",
        default=[],
        metavar="AREA.KEY=VALUE",
        help="override shipped parameters (YAML values), to explore other defaults; "
        "repeat it or list several",
    )
    args = parser.parse_args()
    for item in args.set:
        key, equals, value = item.partition("=")
        if not equals or not key:
            parser.error(f"--set takes AREA.KEY=VALUE, got {item!r}")
        OVERRIDES[key] = yaml.safe_load(value)
    os.environ.setdefault("KMP_WARNINGS", "0")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    log(f"torch {torch.__version__}, {torch.get_num_threads()} threads; data {BENCHDATA}")

    parts = []
    if "tabular" in args.parts:
        parts.append(run_tabular(args.datasets, args.seeds, args.methods))
    if "series" in args.parts:
        parts.append(run_series())
    if "images" in args.parts:
        parts.append(run_images(args.digits))
    results = pd.concat(parts, ignore_index=True)
    if args.json:
        args.json.write_text(results.to_json(orient="records", indent=1))
    for part, group in results.groupby("part", sort=False):
        print(f"\n### {part} (AUROC)\n")
        print(pivot(group))
    seconds = results.groupby("method").seconds.sum()
    print(
        "\nseconds per method, all datasets and seeds: "
        + ", ".join(f"{m} {s:.0f}" for m, s in seconds.items())
    )
    tabular = results[results.part == "tabular"]
    if not tabular.empty:
        print("\n" + summary_line(tabular))


if __name__ == "__main__":
    main()
