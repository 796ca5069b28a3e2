"""The model bundle: everything between raw rows and answers, as files without pickles.

``bundle.json`` holds the configs, scaler, threshold, schema and validation suite;
``state_dict.pt`` holds the weights, loaded with ``weights_only=True``. This module
imports neither MLflow nor Kedro, so bundles load wherever torch and pandas do (the
MLflow pyfunc in ``aeops.serving`` and the batch engine both build on it).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from aeops.data import DataConfig, FittedScaler, WindowInputs, input_spec_from_dict
from aeops.models import ModelConfig, build_model
from aeops.scoring import Predictor, Threshold
from aeops.validation._views import STEP_COLUMN

BUNDLE_FORMAT_VERSION = 2
_MANIFEST = "bundle.json"
_WEIGHTS = "state_dict.pt"


@dataclass(frozen=True)
class BundleSpec:
    """What the bundle knows about its input beyond the predictor itself.

    Attributes:
        id_column: carried through to every answer.
        validation_suite: the Great Expectations suite of the training data (JSON form).
        data: the ``data`` parameters the model was trained with (JSON form).
    """

    id_column: str
    validation_suite: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def timestamp_column(self) -> str | None:
        """The column that orders a series' steps; None for tables and images."""
        return self.data.get("timestamp_column") if self.data.get("kind") == "timeseries" else None


def write_bundle(directory: str | os.PathLike[str], predictor: Predictor, spec: BundleSpec) -> Path:
    """Write ``predictor`` and ``spec`` into ``directory`` (created) and return it."""
    if predictor.threshold is None:
        raise ValueError("a bundle needs a predictor with a threshold")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    manifest = {
        "format_version": BUNDLE_FORMAT_VERSION,
        "model_config": predictor.model.config.model_dump(mode="json"),
        "inputs": predictor.inputs.to_dict(),
        "id_column": spec.id_column,
        "scaler": predictor.scaler.to_dict(),
        "threshold": predictor.threshold.to_dict(),
        "validation_suite": spec.validation_suite,
        "data": spec.data,
    }
    (directory / _MANIFEST).write_text(json.dumps(manifest, indent=2, allow_nan=False))
    state = {k: v.detach().cpu() for k, v in predictor.model.state_dict().items()}
    torch.save(state, directory / _WEIGHTS)
    return directory


class BundleFormatError(ValueError):
    """A bundle this aeops cannot read: another release wrote it."""


def read_bundle(
    directory: str | os.PathLike[str], device: torch.device | None = None
) -> tuple[Predictor, BundleSpec]:
    """Rebuild the predictor and spec that :func:`write_bundle` wrote.

    Raises:
        BundleFormatError: if the bundle was written by an incompatible format version.
    """
    directory = Path(directory)
    manifest = json.loads((directory / _MANIFEST).read_text())
    if manifest.get("format_version") != BUNDLE_FORMAT_VERSION:
        raise BundleFormatError(
            f"{directory} holds bundle format {manifest.get('format_version')}, "
            f"this aeops reads format {BUNDLE_FORMAT_VERSION}: load it with the aeops "
            "release that registered it, or train the model again"
        )
    inputs = input_spec_from_dict(manifest["inputs"])
    model = build_model(ModelConfig(**manifest["model_config"]), inputs.sample_shape)
    state = torch.load(directory / _WEIGHTS, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    device = device or torch.device("cpu")
    model.to(device).eval()
    predictor = Predictor(
        model=model,
        inputs=inputs,
        scaler=FittedScaler.from_dict(manifest["scaler"]),
        threshold=Threshold.from_dict(manifest["threshold"]),
        device=device,
    )
    spec = BundleSpec(
        id_column=manifest["id_column"],
        validation_suite=manifest["validation_suite"],
        data=manifest["data"],
    )
    return predictor, spec


@dataclass(frozen=True)
class LoadedBundle:
    """A bundle ready to score, and where it came from (model name, version, run)."""

    predictor: Predictor
    spec: BundleSpec
    provenance: dict[str, str] = field(default_factory=dict)

    @property
    def pinned_model_uri(self) -> str:
        """The exact registered version (``models:/name/3``), which an alias moved later
        does not change; the URI it was loaded by when it names no version."""
        return pinned_model_uri(self.provenance)

    @property
    def required_columns(self) -> tuple[str, ...]:
        """The input columns the model needs: its own, and a series' timestamp column
        when the suite checks the steps between timestamps."""
        names = tuple(self.predictor.inputs.input_columns)
        checks_steps = any(
            expectation.get("kwargs", {}).get("column") == STEP_COLUMN
            for expectation in (self.spec.validation_suite or {}).get("expectations", [])
        )
        if isinstance(self.predictor.inputs, WindowInputs) and checks_steps:
            data = DataConfig(**self.spec.data) if self.spec.data else DataConfig()
            names += (data.timestamp_column,)
        return names

    def missing_columns_problem(self, where: str, columns: list[str]) -> str | None:
        """What is wrong with an input of ``columns`` that lacks one of
        :attr:`required_columns`, or None.

        A suite checks the columns a batch has, and an image's or a series' suite
        checks columns derived from the input (the image's size, the steps between
        timestamps), whose failures would not name the input's own column.
        """
        names = self.required_columns
        missing = [name for name in names if name not in columns]
        if not missing:
            return None
        return (
            f"{where} has no column {missing[0]!r}"
            + (f" (nor {missing[1:]})" if len(missing) > 1 else "")
            + f", which the model needs; it expects {list(names)}"
        )


def pinned_model_uri(provenance: Mapping[str, str]) -> str:
    """``models:/<model_name>/<model_version>`` from a provenance that names both, else
    its ``model_uri``."""
    if "model_name" in provenance and "model_version" in provenance:
        return f"models:/{provenance['model_name']}/{provenance['model_version']}"
    return provenance["model_uri"]


def provenance_metadata(bundle: LoadedBundle, output: str) -> dict[str, Any]:
    """Parquet key-value metadata: ``aeops.<key>`` for every provenance entry, with
    the model URI pinned to its version (an output holds one version's answers)."""
    provenance = {**bundle.provenance, "output": output}
    if "model_uri" in provenance:
        provenance["model_uri"] = bundle.pinned_model_uri
    return {f"aeops.{k}": v for k, v in provenance.items()}
