"""The MLflow pyfunc that serves a bundle: ``predict(df, params={"output": ...})``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel, PythonModelContext

from aeops.serving._bundle_files import BundleSpec, read_bundle

OUTPUTS = ("all", "embedding", "reconstruction_error", "is_anomaly")


def scores_frame(
    ids: pd.Series | np.ndarray,
    id_column: str,
    embedding: np.ndarray,
    reconstruction_error: np.ndarray,
    is_anomaly: np.ndarray,
    output: str = "all",
) -> pd.DataFrame:
    """Answers as a frame: the id, then the columns ``output`` asks for."""
    if output not in OUTPUTS:
        raise ValueError(
            f"params.output={output!r} is unknown; choose one of: {', '.join(OUTPUTS)}"
        )
    columns: dict[str, Any] = {id_column: np.asarray(ids)}
    if output in ("all", "embedding"):
        columns["embedding"] = list(embedding.astype(np.float32, copy=False))
    if output in ("all", "reconstruction_error"):
        columns["reconstruction_error"] = reconstruction_error
    if output in ("all", "is_anomaly"):
        columns["is_anomaly"] = is_anomaly
    return pd.DataFrame(columns)


class AutoencoderBundle(PythonModel):
    """Raw rows in; embeddings, reconstruction errors and anomaly flags out."""

    def load_context(self, context: PythonModelContext) -> None:
        """Rebuild the predictor from the bundle's artifacts."""
        self._predictor, self._spec = read_bundle(Path(context.artifacts["bundle"]))

    @property
    def spec(self) -> BundleSpec:
        """The loaded bundle's input spec."""
        return self._spec

    def predict(
        self,
        context: PythonModelContext | None,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        """Score raw rows.

        Args:
            context: unused (artifacts were read in :meth:`load_context`).
            model_input: rows with the training feature columns; the id column is
                carried through, or the row position is used when it is absent.
            params: ``{"output": "all" | "embedding" | "reconstruction_error" |
                "is_anomaly"}``; default ``all``.

        Returns:
            One row per input row, in input order.
        """
        output = (params or {}).get("output", "all")
        frame = pd.DataFrame(model_input)
        scores = self._predictor.score_frame(frame)
        id_column = self._spec.id_column
        ids = frame[id_column] if id_column in frame.columns else np.arange(len(frame))
        return scores_frame(
            ids,
            id_column,
            scores.embedding,
            scores.reconstruction_error,
            scores.is_anomaly,
            output,
        )
