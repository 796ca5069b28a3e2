"""The predictor's transfers to a device: layouts and groups, on a GPU when present.

Imports neither kedro nor mlflow, so ``bench/gpu_check.sh`` runs it on the bare CUDA
image beside tests/training.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from aeops.data import TabularInputs, WindowInputs, fit_scaler
from aeops.models import ModelConfig, build_model
from aeops.scoring import Predictor
from aeops.scoring import _predictor as predictor_module
from aeops.scoring._predictor import _to_device

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize(
    "make",
    [
        lambda a: np.asfortranarray(a),  # a table as read, column by column
        lambda a: np.asfortranarray(a)[5:37],  # rows sliced from one
        lambda a: np.ascontiguousarray(a),
        lambda a: np.ascontiguousarray(a)[::2],  # strided rows
        lambda a: np.asfortranarray(a)[:, :1],  # one column
        lambda a: np.asfortranarray(a)[:0],  # no rows
        lambda a: np.ascontiguousarray(a)[::-1],  # reversed rows, which torch cannot view
        lambda a: np.asfortranarray(a)[::-1],
        lambda a: np.asfortranarray(a)[:, ::-1],  # reversed columns
    ],
)
def test_a_block_reaches_the_device_row_major_with_its_values(
    make: Callable[[np.ndarray], np.ndarray],
) -> None:
    block = make(np.random.default_rng(0).normal(size=(64, 6)).astype(np.float32))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    moved = _to_device(block, device)
    assert moved.is_contiguous() and moved.device.type == device.type
    np.testing.assert_array_equal(moved.cpu().numpy(), block)


def _tabular(device: torch.device, batch_size: int) -> Predictor:
    torch.manual_seed(0)
    model = build_model(ModelConfig(architecture="mlp", latent_dim=3, hidden_dims=(16,)), (6,))
    values = np.random.default_rng(1).normal(size=(50, 6))
    scaler = fit_scaler(values, [f"f{i}" for i in range(6)], "standard")
    inputs = TabularInputs(tuple(f"f{i}" for i in range(6)))
    return Predictor(model.to(device), inputs, scaler, batch_size=batch_size, device=device)


def _compare_with_the_cpu(samples: np.ndarray, device: Predictor, cpu: Predictor) -> None:
    np.testing.assert_allclose(device.embed_samples(samples), cpu.embed_samples(samples), atol=1e-5)
    for got, expected in zip(
        device.encode_samples(samples), cpu.encode_samples(samples), strict=True
    ):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        device.reconstruct_samples(samples), cpu.reconstruct_samples(samples), rtol=1e-4, atol=1e-5
    )
    assert device.embed_samples(samples[:0]).shape == (0, 3)
    # Row scores group by group (several batches per transfer) against the whole input's.
    embeddings, elementwise = device.encode_samples(samples)
    expected = device.inputs.row_scores(len(samples), embeddings, elementwise)
    for got, reference in zip(device.score_samples(samples, len(samples)), expected, strict=True):
        np.testing.assert_allclose(got, reference, rtol=1e-6, atol=0)


# Groups of 4 batches of 7 rows (4 x 7 rows x 6 float32 = 672 bytes); 1003 rows end
# with a short group and a short batch.
_GROUP_BYTES = 4 * 7 * 6 * 4
_ROWS = 1003


def _samples(layout: str) -> np.ndarray:
    values = np.random.default_rng(2).normal(size=(_ROWS, 6)).astype(np.float32)
    return np.asfortranarray(values) if layout == "F" else values


@pytest.mark.parametrize("layout", ["F", "C"])
def test_the_device_path_answers_in_order_across_group_and_batch_edges(
    layout: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The device branch run on the CPU: a predictor that reports a CUDA device, and a
    # transfer that stays on the CPU. The GPU test below runs the real transfer.
    monkeypatch.setattr(predictor_module, "_TRANSFER_BYTES", _GROUP_BYTES)
    real_transfer = predictor_module._to_device
    moved: list[int] = []

    def transfer(block: np.ndarray, device: torch.device) -> torch.Tensor:
        moved.append(len(block))
        return real_transfer(block, torch.device("cpu"))

    monkeypatch.setattr(predictor_module, "_to_device", transfer)
    samples = _samples(layout)
    device = _tabular(torch.device("cpu"), 7)
    monkeypatch.setattr(device, "_device", lambda: torch.device("cuda"))
    _compare_with_the_cpu(samples, device, _tabular(torch.device("cpu"), 7))
    assert moved[: -(-_ROWS // 28)] == [28] * (_ROWS // 28) + [_ROWS % 28]


@cuda
@pytest.mark.parametrize("layout", ["F", "C"])
def test_on_a_gpu_groups_of_batches_give_the_cpus_answers_in_order(
    layout: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(predictor_module, "_TRANSFER_BYTES", _GROUP_BYTES)
    samples = _samples(layout)
    gpu, cpu = _tabular(torch.device("cuda"), 7), _tabular(torch.device("cpu"), 7)
    _compare_with_the_cpu(samples, gpu, cpu)


@cuda
def test_on_a_gpu_windows_give_the_cpus_answers() -> None:
    inputs = WindowInputs(columns=("a", "b"), length=8, stride=1)
    torch.manual_seed(0)
    model = build_model(ModelConfig(architecture="recurrent", latent_dim=4), inputs.sample_shape)
    scaler = fit_scaler(np.random.default_rng(3).normal(size=(50, 2)), ["a", "b"], "standard")
    samples = np.random.default_rng(4).normal(size=(300, 8, 2)).astype(np.float32)
    answers = []
    for device in (torch.device("cpu"), torch.device("cuda")):
        predictor = Predictor(model.to(device), inputs, scaler, batch_size=64, device=device)
        answers.append(predictor.encode_samples(samples))
    for got, expected in zip(answers[1], answers[0], strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
