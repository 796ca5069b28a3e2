"""Registered bundles of each data kind, trained once per module on a temp store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from aeops.demo_data import make_image_demo, make_timeseries_demo
from aeops.pipelines.train import create_pipeline


def tabular_rows(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(n, 2)) @ np.random.default_rng(7).normal(size=(2, 6))
    frame = pd.DataFrame(values, columns=[f"f{i}" for i in range(6)])
    frame.insert(0, "id", np.arange(n, dtype=np.int64) + 10_000 * (seed + 1))
    return frame


def image_rows() -> pd.DataFrame:
    demo = make_image_demo()
    return pd.DataFrame({"id": demo["ids"], "image": list(demo["images"]), "label": demo["labels"]})


def flat_image_rows() -> pd.DataFrame:
    """The demo images without labels, each a flat float64 array, as Parquet holds them."""
    images = image_rows().drop(columns=["label"])
    images["image"] = [a.reshape(-1).astype(np.float64) for a in images["image"]]
    return images


DATA = {
    "tabular": {"kind": "tabular", "label_column": None},
    "timeseries": {
        "kind": "timeseries",
        "label_column": "label",
        "window": {"length": 16, "stride": 8},
        "max_gap": "5min",
        "split": {"stratify": False},
    },
    "image": {"kind": "image", "label_column": "label", "pixel_range": [0, 16]},
}


def train_bundle(kind: str, raw: pd.DataFrame) -> str:
    """Run `train` on ``raw`` in the active tracking store; return the model URI."""
    model: dict[str, Any] = {"latent_dim": 3, "hidden_dims": [8], "dropout": 0.0}
    if kind == "image":
        model.update(hidden_dims=[8, 16], reconstruction_loss="bce")
    params = {
        "data": DATA[kind],
        "scaling": {"method": "minmax" if kind == "image" else "robust"},
        "model": model,
        "training": {"epochs": 2, "batch_size": 64},
        "threshold": {"quantile": 0.9},
        "registry": {"model_name": f"embed-{kind}"},
    }
    catalog = DataCatalog({"raw_data": MemoryDataset(raw)})
    for name, value in params.items():
        catalog[f"params:{name}"] = value
    with mlflow.start_run():
        SequentialRunner().run(create_pipeline(), catalog)
    return f"models:/embed-{kind}@champion"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A tracking store with one bundle per data kind."""
    root = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    previous = Path.cwd()
    mp = pytest.MonkeyPatch()
    mp.chdir(root)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    uris = {
        "tabular": train_bundle("tabular", tabular_rows()),
        "timeseries": train_bundle("timeseries", make_timeseries_demo(n_steps=600)),
        "image": train_bundle("image", image_rows()),
    }
    yield {"uri": uri, "models": uris, "root": root}
    mp.undo()
    assert Path.cwd() == previous
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)
