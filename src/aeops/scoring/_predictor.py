"""Raw rows in, embeddings and anomaly scores out: the one inference path."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from aeops.data import FittedScaler, InputSpec
from aeops.models import Autoencoder
from aeops.scoring._threshold import Threshold

# Batches with fewer rows go to the model row-major (see Predictor._batches).
_MIN_STRIDED_ROWS = 64


@dataclass(frozen=True)
class Scores:
    """Answers for a frame's rows, in input order."""

    embedding: np.ndarray  # (N, latent_dim) float32
    reconstruction_error: np.ndarray  # (N,) float64
    is_anomaly: np.ndarray  # (N,) bool


@dataclass
class Predictor:
    """A trained model with everything between raw rows and answers.

    Evaluation, the batch jobs and the served MLflow bundle all call
    :meth:`score_frame`, so they give identical numbers for the same rows. The input
    spec turns rows into samples (rows, images or windows) and maps each sample's
    answers back to rows.
    """

    model: Autoencoder
    inputs: InputSpec
    scaler: FittedScaler
    threshold: Threshold | None = None
    batch_size: int = 4096
    device: torch.device | None = None

    def _device(self) -> torch.device:
        return self.device or next(self.model.parameters()).device

    def samples(self, frame: pd.DataFrame) -> np.ndarray:
        """Scaled model samples of ``frame`` (S, *sample_shape) float32.

        Raises:
            InputSchemaError: naming missing, non-numeric or non-finite inputs.
        """
        return self.inputs.samples(frame, self.scaler)

    def _batches(self, samples: np.ndarray) -> list[torch.Tensor]:
        device = self._device()
        batches = []
        for start in range(0, samples.shape[0], self.batch_size):
            part = samples[start : start + self.batch_size]
            # A column-major table's rows go to the first matmul as they lie: BLAS reads
            # a transposed operand in place, where a transposing copy cost as much as
            # the encoder. Below _MIN_STRIDED_ROWS rows its small-matrix kernels give
            # other bits than for row-major rows, so small batches are copied: a row
            # gets the same bits in a batch of any size (tested). A device gets one
            # contiguous block per transfer.
            if device.type != "cpu" or part.shape[0] < _MIN_STRIDED_ROWS:
                part = np.ascontiguousarray(part)
            batches.append(torch.from_numpy(part).to(device))
        return batches

    def encode_samples(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings (S, latent_dim) float32 and per-element scores (S, *shape) float32."""
        self.model.eval()
        embeddings, elementwise = [], []
        with torch.inference_mode():
            for batch in self._batches(samples):
                z, scores = self.model.elementwise_scores(batch)
                embeddings.append(z.float().cpu().numpy())
                elementwise.append(scores.float().cpu().numpy())
        if not embeddings:
            latent = self.model.config.latent_dim
            return np.empty((0, latent), np.float32), np.empty((0, *samples.shape[1:]), np.float32)
        return np.concatenate(embeddings), np.concatenate(elementwise)

    def embed_samples(self, samples: np.ndarray) -> np.ndarray:
        """Embeddings (S, latent_dim) float32 of scaled samples: the encoder alone.

        The same numbers as :meth:`encode_samples` gives, at the encoder's cost only.
        """
        self.model.eval()
        embeddings = []
        with torch.inference_mode():
            for batch in self._batches(samples):
                embeddings.append(self.model.encode(batch).float().cpu().numpy())
        if not embeddings:
            return np.empty((0, self.model.config.latent_dim), np.float32)
        return np.concatenate(embeddings)

    def embeddings(self, frame: pd.DataFrame) -> np.ndarray:
        """Per-row embeddings (N, latent_dim) float32 of raw rows."""
        return self.inputs.row_embeddings(len(frame), self.embed_samples(self.samples(frame)))

    def embed_and_score(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Per-row embeddings (N, latent_dim) and anomaly scores (N,) of raw rows."""
        embeddings, elementwise = self.encode_samples(self.samples(frame))
        return self.inputs.row_scores(len(frame), embeddings, elementwise)

    def diagnose(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One pass for evaluation: per-row embeddings (N, L), anomaly scores (N,) and
        the score of each value in a row (N, values per row: features or pixels)."""
        embeddings, elementwise = self.encode_samples(self.samples(frame))
        row_embeddings, scores = self.inputs.row_scores(len(frame), embeddings, elementwise)
        return row_embeddings, scores, self.inputs.row_value_scores(len(frame), elementwise)

    def reconstruction_errors(self, frame: pd.DataFrame) -> np.ndarray:
        """Per-row anomaly scores (N,) of raw rows."""
        return self.embed_and_score(frame)[1]

    def reconstruct_samples(self, samples: np.ndarray) -> np.ndarray:
        """Deterministic reconstructions (S, *sample_shape) float32 of scaled samples."""
        self.model.eval()
        outputs = []
        with torch.inference_mode():
            for batch in self._batches(samples):
                outputs.append(self.model.reconstruct(batch).float().cpu().numpy())
        if not outputs:
            return np.empty((0, *self.inputs.sample_shape), np.float32)
        return np.concatenate(outputs)

    def reconstructions(self, frame: pd.DataFrame) -> np.ndarray:
        """Per-row reconstructions of raw rows in original units, (N, values per row)."""
        stacked = self.reconstruct_samples(self.samples(frame))
        return self.inputs.row_reconstructions(len(frame), stacked, self.scaler)

    def score_frame(self, frame: pd.DataFrame) -> Scores:
        """Score raw rows: samples, encode, decode, map back to rows, threshold.

        Raises:
            ValueError: if the predictor has no threshold yet.
        """
        if self.threshold is None:
            raise ValueError("this predictor has no anomaly threshold; choose one first")
        embedding, errors = self.embed_and_score(frame)
        return Scores(
            embedding=embedding.astype(np.float32, copy=False),
            reconstruction_error=errors,
            is_anomaly=errors > self.threshold.value,
        )
