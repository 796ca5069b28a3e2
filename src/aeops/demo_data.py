"""The committed demo dataset, derived deterministically from scikit-learn's copy of
the Breast Cancer Wisconsin (Diagnostic) data.

Following the ODDS "WBC" construction used across anomaly-detection benchmarks, benign
tumours are the normal class and a small seeded sample of malignant ones are the
anomalies. Run ``python -m aeops.demo_data`` to regenerate ``data/01_raw/``.
"""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer

logger = logging.getLogger(__name__)

TABULAR_DEMO_FILE = "breast_cancer_anomalies.csv"


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


def write_demo_data(raw_dir: Path) -> list[Path]:
    """Write every demo dataset under ``raw_dir`` and return their paths."""
    raw_dir.mkdir(parents=True, exist_ok=True)
    path = raw_dir / TABULAR_DEMO_FILE
    make_tabular_demo().to_csv(path, index=False, float_format="%.6g")
    logger.info("wrote %s", path)
    return [path]


def main() -> None:
    """Command-line entry point: regenerate the committed demo data."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw-dir", type=Path, default=Path("data/01_raw"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    write_demo_data(args.raw_dir)


if __name__ == "__main__":
    main()
