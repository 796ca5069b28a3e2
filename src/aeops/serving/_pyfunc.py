"""The MLflow pyfunc that serves a bundle: ``predict(df, params={"output": ...})``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel, PythonModelContext

from aeops.bundle import read_bundle
from aeops.scoring import Predictor

OUTPUTS = ("all", "embedding", "reconstruction_error", "is_anomaly", "reconstruction")


def scores_frame(
    ids: pd.Series | np.ndarray,
    id_column: str,
    embedding: np.ndarray,
    reconstruction_error: np.ndarray,
    is_anomaly: np.ndarray,
    output: str = "all",
) -> pd.DataFrame:
    """Scores as a frame: the id, then the score columns ``output`` asks for."""
    columns: dict[str, Any] = {id_column: np.asarray(ids)}
    if output in ("all", "embedding"):
        columns["embedding"] = list(embedding.astype(np.float32, copy=False))
    if output in ("all", "reconstruction_error"):
        columns["reconstruction_error"] = reconstruction_error
    if output in ("all", "is_anomaly"):
        columns["is_anomaly"] = is_anomaly
    return pd.DataFrame(columns)


def predict_frame(
    predictor: Predictor, frame: pd.DataFrame, id_column: str, output: str = "all"
) -> pd.DataFrame:
    """Answers for raw rows as a frame: the id, then the columns ``output`` asks for.

    ``all`` gives ``embedding``, ``reconstruction_error`` and ``is_anomaly``;
    ``reconstruction`` gives each row's reconstruction in original units (the
    features of a row or of a time step, or a flattened image).

    Raises:
        ValueError: for an unknown ``output``.
    """
    if output not in OUTPUTS:
        raise ValueError(
            f"params.output={output!r} is unknown; choose one of: {', '.join(OUTPUTS)}"
        )
    ids = frame[id_column].to_numpy() if id_column in frame.columns else np.arange(len(frame))
    if output == "reconstruction":
        reconstructions = predictor.reconstructions(frame)
        return pd.DataFrame({id_column: ids, "reconstruction": list(reconstructions)})
    if output == "embedding":  # the encoder alone: the same vectors, at half the cost
        return pd.DataFrame({id_column: ids, "embedding": list(predictor.embeddings(frame))})
    scores = predictor.score_frame(frame)
    return scores_frame(
        ids, id_column, scores.embedding, scores.reconstruction_error, scores.is_anomaly, output
    )


class AutoencoderBundle(PythonModel):
    """Raw rows in; embeddings, reconstruction errors, anomaly flags or reconstructions out."""

    # MLflow wraps a subclass's predict to validate inputs by its type hints, and warns
    # at every import when there are none. The predictor checks its inputs itself (the
    # columns, sizes and finiteness it needs), so the wrapper would only warn.
    _skip_type_hint_validation = True

    def load_context(self, context: PythonModelContext) -> None:
        """Rebuild the predictor from the bundle's artifacts."""
        self._predictor, self._spec = read_bundle(Path(context.artifacts["bundle"]))

    def predict(
        self,
        context: PythonModelContext | None,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        """Score raw rows.

        Args:
            context: unused (artifacts were read in :meth:`load_context`).
            model_input: rows with the training feature columns (tables, time steps in
                time order), or an image column of arrays; the id column is carried
                through, or the row position is used when it is absent.
            params: ``{"output": "all" | "embedding" | "reconstruction_error" |
                "is_anomaly" | "reconstruction"}``; default ``all``.

        Returns:
            One row per input row, in input order.
        """
        output = (params or {}).get("output", "all")
        return predict_frame(
            self._predictor, pd.DataFrame(model_input), self._spec.id_column, output
        )
