"""The README's "From Python" example, run as written."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from aeops.bundle import BundleSpec, read_bundle, write_bundle

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _example() -> str:
    readme = (PROJECT_ROOT / "README.md").read_text()
    match = re.search(r"<!-- library-example -->\n```python\n(.*?)```", readme, re.S)
    assert match is not None, "README.md lost its marked library example"
    return match.group(1)


def test_the_library_example_fits_scores_and_saves_as_the_readme_says(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(PROJECT_ROOT)  # the example reads the demo by its relative path
    names: dict[str, Any] = {}
    exec(compile(_example(), "README.md", "exec"), names)  # our own README
    test, scores, predictor = names["test"], names["scores"], names["predictor"]
    assert len(scores.reconstruction_error) == len(test)
    labels = test["label"].to_numpy()
    assert roc_auc_score(labels, scores.reconstruction_error) > 0.8
    assert scores.embedding.dtype == np.float32
    data = names["data"]
    spec = BundleSpec(id_column="id", data=data.model_dump(mode="json"))
    write_bundle(tmp_path, predictor, spec)
    again, _ = read_bundle(tmp_path)
    np.testing.assert_array_equal(
        again.score_frame(test).reconstruction_error, scores.reconstruction_error
    )
