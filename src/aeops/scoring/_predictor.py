"""Raw rows in, embeddings and anomaly scores out: the one inference path."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import cast

import numpy as np
import pandas as pd
import torch

from aeops.data import FittedScaler, InputSpec
from aeops.models import Autoencoder
from aeops.scoring._cpu_linear import OneDnnLinear, direct_twin, onednn_linear_available
from aeops.scoring._threshold import Threshold

# Samples per host-to-device transfer, at most (see Predictor._batches).
_TRANSFER_BYTES = 64 << 20
# Every model call gets a multiple of this many samples (see Predictor._answer_all).
_PAD_ROWS = 64
# Rows per model call by default: on a GPU a fixed count; on the CPU about this many
# bytes of samples (see Predictor._batch_rows).
_DEVICE_BATCH_ROWS = 4096
_CPU_BATCH_BYTES = 2 << 20
_CPU_MAX_BATCH_ROWS = 16384
# ... and never more than this many bytes of samples, unless _PAD_ROWS samples are more.
_CPU_MAX_CALL_BYTES = 32 << 20


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
    batch_size: int | None = None  # rows per model call; None picks (see _batch_rows)
    device: torch.device | None = None

    def _device(self) -> torch.device:
        return self.device or next(self.model.parameters()).device

    def _on_onednn(self) -> bool:
        """Whether the model's linear layers run on oneDNN (see ``_cpu_linear``)."""
        return self._device().type == "cpu" and onednn_linear_available()

    def wants_row_major(self, samples: np.ndarray) -> bool:
        """Whether :meth:`model_layout` would copy ``samples``."""
        return self._on_onednn() and not samples.flags.c_contiguous

    def model_layout(self, samples: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``samples`` in the memory layout the model reads fastest; a copy goes into
        ``out`` (a row-major array of their shape) when given.

        Row-major for oneDNN on the CPU. A column-major table stays as it is
        otherwise: BLAS reads it in place, and it goes to a GPU as it lies (see
        :meth:`_batches`). The batch jobs call this in their reader thread, so the
        transposing copy, if any, is not made on the model's thread.
        """
        if not self.wants_row_major(samples):
            return samples
        return _row_major(samples, out).numpy()

    def samples(self, frame: pd.DataFrame) -> np.ndarray:
        """Scaled model samples of ``frame`` (S, *sample_shape) float32.

        Raises:
            InputSchemaError: naming missing, non-numeric or non-finite inputs.
        """
        return self.inputs.samples(frame, self.scaler)

    def _batch_rows(self, samples: np.ndarray) -> int:
        """Rows per model call: :attr:`batch_size` when set, else 4096 on a GPU, and
        on the CPU as many rows as make about 2 MiB of samples (a multiple of
        _PAD_ROWS, from 4096 to 16384, but no more than make 32 MiB: large images,
        whose activations grow with them).

        On the CPU every call costs Python and thread hand-offs, so narrow samples get
        more rows per call: for 64 float32 features the encoder alone ran at 10.2M
        rows/s with 4096 rows per call, 14.0M with 8192 (2 MiB) and 12.8M with 16384
        (AMD EPYC, one thread). Wide samples keep 4096 rows, as before, and the
        narrowest get 16384, since the hidden layers' work grows with the rows too.
        """
        if self.batch_size is not None:
            return self.batch_size
        if self._device().type != "cpu":
            return _DEVICE_BATCH_ROWS
        sample_bytes = max(1, samples[:1].nbytes)
        fitting = _CPU_BATCH_BYTES // sample_bytes // _PAD_ROWS * _PAD_ROWS
        at_most = max(_PAD_ROWS, _CPU_MAX_CALL_BYTES // sample_bytes // _PAD_ROWS * _PAD_ROWS)
        return min(_CPU_MAX_BATCH_ROWS, max(min(_DEVICE_BATCH_ROWS, at_most), fitting))

    def _batches(self, samples: np.ndarray) -> Iterator[list[torch.Tensor]]:
        """The samples as model batches of :meth:`_batch_rows` rows, in groups that share one
        transfer to the model's device; callers bring each group's answers back at once.

        On the CPU a group is one batch. With oneDNN (see ``_cpu_linear``) every batch
        is row-major, which its kernels need. On ``F.linear``, a column-major table's
        rows go to the first matmul as they lie: BLAS reads a transposed operand in
        place, where a transposing copy cost as much as the encoder.

        On a GPU a group is up to _TRANSFER_BYTES of samples, copied as they lie in
        host memory (a column-major table as its transpose, with no transposing copy on
        the host, which cost as much as the rest of the step) and laid out row-major on
        the device, where that copy is almost free.
        """
        device = self._device()
        rows = samples.shape[0]
        batch_rows = self._batch_rows(samples)
        if device.type == "cpu":
            row_major = self._on_onednn()
            for start in range(0, rows, batch_rows):
                part = samples[start : start + batch_rows]
                yield [_row_major(part) if row_major else torch.from_numpy(part)]
            return
        row_bytes = max(1, samples[:1].nbytes)
        group_rows = max(1, _TRANSFER_BYTES // row_bytes // batch_rows) * batch_rows
        for first in range(0, rows, group_rows):
            block = _to_device(samples[first : first + group_rows], device)
            yield [block[start : start + batch_rows] for start in range(0, len(block), batch_rows)]

    def _answer_all(
        self,
        samples: np.ndarray,
        answer: Callable[[Autoencoder, torch.Tensor], tuple[torch.Tensor, ...]],
        shapes: tuple[tuple[int, ...], ...],
        finish: Callable[[list[np.ndarray]], list[np.ndarray]] | None = None,
    ) -> tuple[np.ndarray, ...]:
        """``answer(model, batch)`` of every sample as float32 host arrays, one per
        output, brought back one group at a time; ``shapes`` are each output's
        per-sample shape, for empty ``samples``. ``finish``, when given, maps each
        group's arrays (and the empty ones) to what is kept of them, sample by sample.

        Each batch goes to the model padded with zero samples to a multiple of
        _PAD_ROWS: the CPU kernels compute the smallest batches, and the last
        elements of some tensors, another way, with other bits. So on the CPU a sample
        gets the same bits in a batch of any size (tested for every model kind, on
        one and two threads). On the CPU the linear layers run on oneDNN where torch
        has it, plain stacks of them as direct calls (see ``_cpu_linear``).
        """
        self.model.eval()
        model: Autoencoder = self.model
        kernels: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
        if self._on_onednn():
            model, kernels = cast(Autoencoder, direct_twin(self.model)), OneDnnLinear()
        keep = finish or (lambda arrays: arrays)
        groups = []
        with torch.inference_mode(), kernels:
            for group in self._batches(samples):
                outputs = [_padded_answer(functools.partial(answer, model), b) for b in group]
                arrays = [
                    (parts[0] if len(parts) == 1 else torch.cat(parts)).float().cpu().numpy()
                    for parts in zip(*outputs, strict=True)
                ]
                groups.append(keep(arrays))
        if not groups:
            return tuple(keep([np.empty((0, *shape), np.float32) for shape in shapes]))
        return tuple(np.concatenate(parts) for parts in zip(*groups, strict=True))

    def encode_samples(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings (S, latent_dim) float32 and per-element scores (S, *shape) float32."""
        shapes = ((self.model.config.latent_dim,), samples.shape[1:])
        embeddings, elementwise = self._answer_all(
            samples, lambda model, b: model.elementwise_scores(b), shapes
        )
        return embeddings, elementwise

    def embed_samples(self, samples: np.ndarray) -> np.ndarray:
        """Embeddings (S, latent_dim) float32 of scaled samples: the encoder alone.

        The same numbers as :meth:`encode_samples` gives, at the encoder's cost only.
        """
        shapes = ((self.model.config.latent_dim,),)
        return self._answer_all(samples, lambda model, b: (model.encode(b),), shapes)[0]

    def embeddings(self, frame: pd.DataFrame) -> np.ndarray:
        """Per-row embeddings (N, latent_dim) float32 of raw rows."""
        return self.inputs.row_embeddings(len(frame), self.embed_samples(self.samples(frame)))

    def score_samples(self, samples: np.ndarray, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-row embeddings (N, latent_dim) and anomaly scores (N,) of the scaled
        samples of ``n_rows`` rows: ``inputs.row_scores`` of :meth:`encode_samples`,
        bit for bit.

        Where each row is a sample, each batch's element scores become the rows' scores
        as soon as the model has answered it, so those of the whole input (as large as
        the input) are never held at once. For 64 features that took the model step
        of the score job from 22 to 18 ms per 65,536 rows (CPU, one thread).
        """
        if not self.inputs.samples_are_rows:
            embeddings, elementwise = self.encode_samples(samples)
            return self.inputs.row_scores(n_rows, embeddings, elementwise)

        def row_scores(arrays: list[np.ndarray]) -> list[np.ndarray]:
            embeddings, elementwise = arrays
            return list(self.inputs.row_scores(len(embeddings), embeddings, elementwise))

        shapes = ((self.model.config.latent_dim,), samples.shape[1:])
        embeddings, scores = self._answer_all(
            samples, lambda model, b: model.elementwise_scores(b), shapes, row_scores
        )
        return embeddings, scores

    def embed_and_score(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Per-row embeddings (N, latent_dim) and anomaly scores (N,) of raw rows."""
        return self.score_samples(self.samples(frame), len(frame))

    def diagnose(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One pass for evaluation: per-row embeddings (N, L), anomaly scores (N,) and
        the reconstruction error of each value in a row (N, values per row: features
        or pixels), which says where a row's score comes from (see
        ``Autoencoder.scores_and_errors``)."""
        samples = self.samples(frame)
        shapes = ((self.model.config.latent_dim,), samples.shape[1:], samples.shape[1:])
        embeddings, elementwise, errors = self._answer_all(
            samples, lambda model, b: model.scores_and_errors(b), shapes
        )
        row_embeddings, scores = self.inputs.row_scores(len(frame), embeddings, elementwise)
        return row_embeddings, scores, self.inputs.row_value_scores(len(frame), errors)

    def reconstruction_errors(self, frame: pd.DataFrame) -> np.ndarray:
        """Per-row anomaly scores (N,) of raw rows."""
        return self.embed_and_score(frame)[1]

    def reconstruct_samples(self, samples: np.ndarray) -> np.ndarray:
        """Deterministic reconstructions (S, *sample_shape) float32 of scaled samples."""
        shapes = (self.inputs.sample_shape,)
        return self._answer_all(samples, lambda model, b: (model.reconstruct(b),), shapes)[0]

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
            raise ValueError(
                "this predictor has no anomaly threshold; choose one on validation rows: "
                "predictor.threshold = choose_threshold(predictor.reconstruction_errors("
                "validation_frame), ThresholdConfig())"
            )
        embedding, errors = self.embed_and_score(frame)
        return Scores(
            embedding=embedding.astype(np.float32, copy=False),
            reconstruction_error=errors,
            is_anomaly=errors > self.threshold.value,
        )


def _padded_answer(
    answer: Callable[[torch.Tensor], tuple[torch.Tensor, ...]], batch: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    """``answer`` of ``batch``, run on the batch padded to a multiple of _PAD_ROWS."""
    rows = batch.shape[0]
    size = -(-rows // _PAD_ROWS) * _PAD_ROWS
    if size == rows:
        return answer(batch)
    padded = batch.new_zeros((size, *batch.shape[1:]))
    padded[:rows] = batch
    return tuple(output[:rows] for output in answer(padded))


def _row_major(block: np.ndarray, out: np.ndarray | None = None) -> torch.Tensor:
    """``block`` as a row-major tensor, sharing its memory when it already is one, else
    copied (into ``out``, a row-major array of its shape and dtype, when given).

    torch's transposing copy of a column-major table is about twice as fast as
    numpy's, so torch copies, but into memory from numpy: torch's allocator handed
    large blocks back to the system at once (574 page faults per 16 MB block on a
    2-core VM). The batch jobs pass an ``out`` they reuse batch after batch (see
    ``aeops.embedding._arrow_tabular``). Reversed axes, which torch cannot view, are
    copied by numpy.
    """
    if block.flags.c_contiguous:
        return torch.from_numpy(block)
    if out is None:
        out = np.empty(block.shape, block.dtype)
    elif out.shape != block.shape or out.dtype != block.dtype or not out.flags.c_contiguous:
        raise ValueError(f"out must be a row-major {block.shape} {block.dtype} array")
    if min(block.strides, default=0) < 0:
        np.copyto(out, block)
        return torch.from_numpy(out)
    return torch.from_numpy(out).copy_(torch.from_numpy(block))


def _to_device(block: np.ndarray, device: torch.device) -> torch.Tensor:
    """``block`` on ``device``, row-major there, copied from the host as it lies.

    A column-major (N, F) block, or rows sliced from one, is sent as its transpose
    (F, N): at most a gather of whole column runs on the host, never an element-wise
    transpose, which the device does instead. Anything else (reversed rows included,
    which torch cannot view) is made row-major on the host first.
    """
    if block.ndim == 2 and 0 <= block.strides[0] < block.strides[1]:
        transposed = torch.from_numpy(block.T).contiguous()  # copies only a sliced block
        return transposed.to(device).t().contiguous()
    return _row_major(block).to(device)
