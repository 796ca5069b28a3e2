"""Raw rows in, embeddings and anomaly scores out: the one inference path."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from aeops.data import FittedScaler
from aeops.models import Autoencoder
from aeops.scoring._threshold import Threshold


class InputSchemaError(ValueError):
    """Input rows do not have the columns or types the model was trained on."""


def feature_matrix(frame: pd.DataFrame, scaler: FittedScaler) -> np.ndarray:
    """The scaled feature matrix (N, F) float32 of ``frame``, columns in scaler order.

    Raises:
        InputSchemaError: naming missing or non-numeric feature columns, or the
            columns and first row holding NaN or inf.
    """
    columns = list(scaler.columns)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputSchemaError(
            f"input is missing feature column(s) {missing}; the model expects {columns}"
        )
    not_numeric = [
        c
        for c in columns
        if not pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c])
    ]
    if not_numeric:
        raise InputSchemaError(
            f"feature column(s) {not_numeric} are not numeric "
            f"(dtypes {[str(frame[c].dtype) for c in not_numeric]})"
        )
    values = frame[columns].to_numpy(dtype=np.float64, na_value=np.nan)
    finite = np.isfinite(values)
    if not finite.all():
        rows, cols = np.nonzero(~finite)
        bad = sorted({columns[c] for c in cols})
        raise InputSchemaError(
            f"{rows.size} non-finite value(s) (NaN or inf) in feature column(s) {bad}; "
            f"first at row position {int(rows[0])}, column {columns[cols[0]]!r}"
        )
    return scaler.transform(values)


@dataclass(frozen=True)
class Scores:
    """Answers for a batch of rows, in input order."""

    embedding: np.ndarray  # (N, latent_dim) float32
    reconstruction_error: np.ndarray  # (N,) float64
    is_anomaly: np.ndarray  # (N,) bool


@dataclass
class Predictor:
    """A trained model with everything between raw rows and answers.

    Evaluation, the batch jobs and the served MLflow bundle all call
    :meth:`score_frame`, so they give identical numbers for the same rows.
    """

    model: Autoencoder
    scaler: FittedScaler
    threshold: Threshold | None = None
    batch_size: int = 8192
    device: torch.device | None = None

    def features(self, frame: pd.DataFrame) -> np.ndarray:
        """The scaled feature matrix of ``frame`` (see :func:`feature_matrix`)."""
        return feature_matrix(frame, self.scaler)

    def encode_features(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings (N, latent_dim) float32 and reconstruction errors (N,) float64 of
        already-scaled features, computed in batches without gradients."""
        device = self.device or next(self.model.parameters()).device
        self.model.eval()
        embeddings, errors = [], []
        for start in range(0, features.shape[0], self.batch_size):
            batch = torch.from_numpy(features[start : start + self.batch_size]).to(device)
            z, error = self.model.score(batch)
            embeddings.append(z.float().cpu().numpy())
            errors.append(error.double().cpu().numpy())
        if not embeddings:
            return np.empty((0, self.model.config.latent_dim), np.float32), np.empty(0)
        return np.concatenate(embeddings), np.concatenate(errors)

    def reconstruction_errors(self, frame: pd.DataFrame) -> np.ndarray:
        """Per-row reconstruction errors (N,) of raw rows."""
        return self.encode_features(self.features(frame))[1]

    def score_frame(self, frame: pd.DataFrame) -> Scores:
        """Score raw rows: select and scale the features, encode, decode, threshold.

        Raises:
            ValueError: if the predictor has no threshold yet.
        """
        if self.threshold is None:
            raise ValueError("this predictor has no anomaly threshold; choose one first")
        embedding, errors = self.encode_features(self.features(frame))
        return Scores(
            embedding=embedding,
            reconstruction_error=errors,
            is_anomaly=errors > self.threshold.value,
        )
