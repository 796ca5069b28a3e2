"""The bundle's files: everything between raw rows and answers, without pickles.

``bundle.json`` holds the configs, scaler, threshold, schema and validation suite;
``state_dict.pt`` holds the weights, loaded with ``weights_only=True``. This module
needs only torch and pandas, so the served model loads in a clean environment.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from aeops.data import FittedScaler
from aeops.models import ModelConfig, build_model
from aeops.scoring import Predictor, Threshold

BUNDLE_FORMAT_VERSION = 1
_MANIFEST = "bundle.json"
_WEIGHTS = "state_dict.pt"


@dataclass(frozen=True)
class BundleSpec:
    """What the bundle knows about its input beyond the scaler's feature columns."""

    id_column: str
    data_kind: str
    input_shape: tuple[int, ...]
    validation_suite: dict[str, Any] = field(default_factory=dict)


def write_bundle(directory: Path, predictor: Predictor, spec: BundleSpec) -> Path:
    """Write ``predictor`` and ``spec`` into ``directory`` (created) and return it."""
    if predictor.threshold is None:
        raise ValueError("a bundle needs a predictor with a threshold")
    directory.mkdir(parents=True, exist_ok=True)
    manifest = {
        "format_version": BUNDLE_FORMAT_VERSION,
        "model_config": predictor.model.config.model_dump(mode="json"),
        "input_shape": list(spec.input_shape),
        "id_column": spec.id_column,
        "data_kind": spec.data_kind,
        "scaler": predictor.scaler.to_dict(),
        "threshold": predictor.threshold.to_dict(),
        "validation_suite": spec.validation_suite,
    }
    (directory / _MANIFEST).write_text(json.dumps(manifest, indent=2, allow_nan=False))
    state = {k: v.detach().cpu() for k, v in predictor.model.state_dict().items()}
    torch.save(state, directory / _WEIGHTS)
    return directory


def read_bundle(
    directory: Path, device: torch.device | None = None
) -> tuple[Predictor, BundleSpec]:
    """Rebuild the predictor and spec that :func:`write_bundle` wrote.

    Raises:
        ValueError: if the bundle was written by an incompatible format version.
    """
    manifest = json.loads((directory / _MANIFEST).read_text())
    if manifest.get("format_version") != BUNDLE_FORMAT_VERSION:
        raise ValueError(
            f"{directory} holds bundle format {manifest.get('format_version')}, "
            f"this aeops reads format {BUNDLE_FORMAT_VERSION}"
        )
    input_shape = tuple(manifest["input_shape"])
    model = build_model(ModelConfig(**manifest["model_config"]), input_shape)
    state = torch.load(directory / _WEIGHTS, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    device = device or torch.device("cpu")
    model.to(device).eval()
    predictor = Predictor(
        model=model,
        scaler=FittedScaler.from_dict(manifest["scaler"]),
        threshold=Threshold.from_dict(manifest["threshold"]),
        device=device,
    )
    spec = BundleSpec(
        id_column=manifest["id_column"],
        data_kind=manifest["data_kind"],
        input_shape=input_shape,
        validation_suite=manifest["validation_suite"],
    )
    return predictor, spec
