"""Shared fixtures: quiet telemetry, a private MLflow store per test, tiny data."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from support import KedroProject

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

# pytest-xdist runs tests in workers whose ``__main__`` (execnet's) has no ``__file__``.
# pyspark's connect module takes that for a doctest run and exits the process, and GX
# imports it whenever pyspark is installed (the spark extra): name the worker's main.
if not hasattr(sys.modules["__main__"], "__file__"):
    sys.modules["__main__"].__file__ = "<pytest-xdist worker>"

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEMO_CSV = PROJECT_ROOT / "data" / "01_raw" / "breast_cancer_anomalies.csv"


@pytest.fixture
def tracking_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh SQLite tracking store and artifact root for one test."""
    for name in [k for k in os.environ if k.startswith("MLFLOW_") and "TELEMETRY" not in k]:
        monkeypatch.delenv(name)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.chdir(tmp_path)  # the default artifact root ./mlruns lands here
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    yield uri
    while mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


@pytest.fixture
def demo_frame() -> pd.DataFrame:
    """The committed demo table."""
    return pd.read_csv(DEMO_CSV)


def make_tabular(n_rows: int = 200, n_features: int = 6, seed: int = 0) -> pd.DataFrame:
    """Correlated normal rows with a few shifted anomalies, ids and labels."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n_rows, 2))
    mixing = rng.normal(size=(2, n_features))
    values = latent @ mixing + 0.05 * rng.normal(size=(n_rows, n_features))
    labels = np.zeros(n_rows, dtype=np.int64)
    anomalies = rng.choice(n_rows, size=max(n_rows // 10, 3), replace=False)
    values[anomalies] += rng.normal(scale=3.0, size=(anomalies.size, n_features))
    labels[anomalies] = 1
    frame = pd.DataFrame(values, columns=[f"f{i}" for i in range(n_features)])
    frame.insert(0, "id", np.arange(n_rows, dtype=np.int64) + 1000)
    frame["label"] = labels
    return frame


@pytest.fixture
def tabular_frame() -> pd.DataFrame:
    """A small synthetic table whose anomalies an autoencoder finds easily."""
    return make_tabular()


@pytest.fixture
def project(tmp_path: Path) -> KedroProject:
    """A fresh project copy for one test."""
    return KedroProject(tmp_path)
