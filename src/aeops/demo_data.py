"""The committed demo datasets, made deterministically. Run ``python -m aeops.demo_data``
to regenerate every file under ``data/01_raw/``.

* Tabular: scikit-learn's copy of the Breast Cancer Wisconsin (Diagnostic) data.
  Following the ODDS "WBC" construction used across anomaly-detection benchmarks,
  benign tumours are the normal class and a seeded sample of malignant ones the
  anomalies.
* Images: scikit-learn's 8x8 handwritten digits (the UCI optdigits test set): every
  "0" is normal and a seeded sample of "6"s are the anomalies (one-class protocol).
* Missing values: the tabular demo with a seeded 10% of its feature values blanked,
  the input of ``kedro run --pipeline=impute``.
* Time series: a generated multivariate sensor series (3 channels, one reading a
  minute) with labelled anomalous segments of five kinds: spikes, a level shift, a
  frequency change, a broken correlation and a flat-lined sensor.
"""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer, load_digits

logger = logging.getLogger(__name__)

TABULAR_DEMO_FILE = "breast_cancer_anomalies.csv"
IMAGE_DEMO_FILE = "digits_zero_vs_six.npz"
# The same images as rows of flat pixels: an input for the image env's batch jobs.
IMAGE_BATCH_DEMO_FILE = "digits_zero_vs_six.parquet"
TIMESERIES_DEMO_FILE = "sensor_series.csv"
MISSING_VALUES_DEMO_FILE = "breast_cancer_missing.csv"


def _snake_case(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_")


def make_tabular_demo(n_anomalies: int = 30, seed: int = 0) -> pd.DataFrame:
    """Benign rows plus ``n_anomalies`` malignant rows, shuffled, with ids and labels.

    Args:
        n_anomalies: how many malignant rows to keep (the dataset has 212).
        seed: seed of the malignant sample and the row order.

    Returns:
        Columns ``id``, 30 numeric features in snake_case, and ``label`` (1 for an anomaly, else 0).
    """
    bunch = load_breast_cancer(as_frame=True)
    features = bunch.data.rename(columns=_snake_case)
    malignant = bunch.target.to_numpy() == 0  # scikit-learn codes malignant as 0
    rng = np.random.default_rng(seed)
    anomalies = rng.choice(np.flatnonzero(malignant), size=n_anomalies, replace=False)
    keep = np.concatenate([np.flatnonzero(~malignant), anomalies])
    frame = features.iloc[keep].reset_index(drop=True)
    frame["label"] = np.isin(keep, anomalies).astype(np.int64)
    frame = frame.iloc[rng.permutation(len(frame))].reset_index(drop=True)
    frame.insert(0, "id", np.arange(len(frame), dtype=np.int64))
    return frame


def make_missing_values_demo(fraction: float = 0.1, seed: int = 0) -> pd.DataFrame:
    """The tabular demo with a seeded ``fraction`` of its feature values set missing.

    Ids and labels stay complete; every row keeps at least one observed feature.
    """
    frame = make_tabular_demo()
    features = [c for c in frame.columns if c not in ("id", "label")]
    rng = np.random.default_rng(seed)
    hidden = rng.random((len(frame), len(features))) < fraction
    hidden[hidden.all(axis=1), 0] = False
    values = frame[features].to_numpy(dtype=np.float64, copy=True)
    values[hidden] = np.nan
    frame[features] = values
    return frame


def make_image_demo(
    normal_digit: int = 0, anomaly_digit: int = 6, n_anomalies: int = 20, seed: int = 0
) -> dict[str, np.ndarray]:
    """All 8x8 images of ``normal_digit`` plus a sample of ``anomaly_digit``, shuffled.

    Returns:
        ``images`` (N, 8, 8) uint8 in 0..16, ``labels`` (N,) with 1 for an anomaly, and
        ``ids`` (N,), the image's index in scikit-learn's digits.
    """
    digits = load_digits()
    rng = np.random.default_rng(seed)
    normal = np.flatnonzero(digits.target == normal_digit)
    anomalies = rng.choice(
        np.flatnonzero(digits.target == anomaly_digit), size=n_anomalies, replace=False
    )
    keep = rng.permutation(np.concatenate([normal, anomalies]))
    return {
        "images": digits.images[keep].astype(np.uint8),
        "labels": np.isin(keep, anomalies).astype(np.int64),
        "ids": keep.astype(np.int64),
    }


# (start, length, kind) of each anomalous segment of a 4000-step series; starts scale
# with the series' length.
_SERIES_ANOMALIES = (
    (700, 12, "spikes"),
    (1500, 40, "level_shift"),
    (2300, 60, "frequency"),
    (2950, 50, "correlation"),
    (3350, 40, "flatline"),
    (3700, 30, "spikes"),
)


def make_timeseries_demo(n_steps: int = 4000, seed: int = 0) -> pd.DataFrame:
    """A 3-channel sensor series, one reading a minute, with labelled anomalies.

    Channels: a daily-like cycle (period 60 steps), a slower companion, and their
    noisy mix. With the default 50/20/30 time split the training segment holds two
    anomalies (the data is unlabelled when training), validation one and test three.

    Returns:
        Columns ``timestamp``, ``temperature``, ``pressure``, ``flow`` and ``label``.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(n_steps, dtype=np.float64)
    phase = 2 * np.pi * t / 60
    temperature = np.sin(phase) + 0.1 * rng.normal(size=n_steps)
    pressure = 0.8 * np.cos(phase) + 0.3 * np.sin(2 * np.pi * t / 300)
    pressure += 0.1 * rng.normal(size=n_steps)
    label = np.zeros(n_steps, dtype=np.int64)
    for start_at_4000, length, kind in _SERIES_ANOMALIES:
        start = start_at_4000 * n_steps // 4000
        length = min(length, n_steps - start)
        span = slice(start, start + length)
        if kind == "spikes":
            temperature[span] += rng.choice([-1, 1], size=length) * rng.uniform(2, 3, length)
        elif kind == "level_shift":
            pressure[span] += 1.5
        elif kind == "frequency":
            temperature[span] = np.sin(4 * phase[span]) + 0.1 * rng.normal(size=length)
        elif kind == "correlation":
            pressure[span] = -pressure[span]
        elif kind == "flatline":
            temperature[span] = temperature[start]
        label[span] = 1
    flow = 0.5 * temperature + 0.5 * pressure + 0.05 * rng.normal(size=n_steps)
    return pd.DataFrame(
        {
            "timestamp": pd.date_range("2026-01-01", periods=n_steps, freq="min"),
            "temperature": temperature,
            "pressure": pressure,
            "flow": flow,
            "label": label,
        }
    )


def write_demo_data(raw_dir: Path) -> list[Path]:
    """Write every demo dataset under ``raw_dir`` and return their paths."""
    raw_dir.mkdir(parents=True, exist_ok=True)
    tabular = raw_dir / TABULAR_DEMO_FILE
    make_tabular_demo().to_csv(tabular, index=False, float_format="%.6g")
    images = raw_dir / IMAGE_DEMO_FILE
    with images.open("wb") as handle:  # a file handle keeps the bytes free of timestamps
        demo = make_image_demo()
        np.savez_compressed(handle, images=demo["images"], labels=demo["labels"], ids=demo["ids"])
    image_rows = raw_dir / IMAGE_BATCH_DEMO_FILE
    pixels = demo["images"].reshape(len(demo["images"]), -1)
    pd.DataFrame({"id": demo["ids"], "image": list(pixels), "label": demo["labels"]}).to_parquet(
        image_rows, index=False
    )
    series = raw_dir / TIMESERIES_DEMO_FILE
    make_timeseries_demo().to_csv(series, index=False, float_format="%.5g")
    missing = raw_dir / MISSING_VALUES_DEMO_FILE
    make_missing_values_demo().to_csv(missing, index=False, float_format="%.6g")
    paths = [tabular, images, image_rows, series, missing]
    for path in paths:
        logger.info("wrote %s", path)
    return paths


def main() -> None:
    """Command-line entry point: regenerate the committed demo data."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw-dir", type=Path, default=Path("data/01_raw"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    write_demo_data(args.raw_dir)


if __name__ == "__main__":
    main()
