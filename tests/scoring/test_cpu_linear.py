"""Linear layers for CPU inference on either kernel, and the predictor on each."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from aeops.data import TabularInputs, fit_scaler
from aeops.models import ModelConfig, build_model
from aeops.scoring import Predictor
from aeops.scoring import _cpu_linear as cpu_linear
from aeops.scoring import _predictor as predictor_module
from aeops.scoring._cpu_linear import CpuLinear, onednn_linear_available

needs_onednn = pytest.mark.skipif(
    not onednn_linear_available(), reason="this torch build has no usable oneDNN linear"
)


def _mlp(widths: tuple[int, ...]) -> nn.Sequential:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for width_in, width_out in itertools.pairwise(widths):
        layers += [nn.Linear(width_in, width_out), nn.ReLU()]
    return nn.Sequential(*layers[:-1]).eval()


def _rows(count: int, width: int) -> torch.Tensor:
    values = np.random.default_rng(1).normal(scale=3, size=(count, width))
    return torch.from_numpy(values.astype(np.float32))


@pytest.mark.parametrize("onednn", [True, False], ids=["onednn", "f.linear"])
@pytest.mark.parametrize("widths", [(64, 64, 32, 16), (9, 16, 8, 2), (300, 40, 3)])
def test_linear_values_and_a_row_gets_the_same_bits_in_any_batch(
    onednn: bool, widths: tuple[int, ...]
) -> None:
    if onednn and not onednn_linear_available():
        pytest.skip("this torch build has no usable oneDNN linear")
    network, x = _mlp(widths), _rows(600, widths[0])
    table = torch.from_numpy(np.asfortranarray(x.numpy()))  # as the reader lays it out
    with torch.inference_mode():
        expected = network(x)
        with CpuLinear(onednn):
            whole = network(table)
            torch.testing.assert_close(whole, expected, rtol=1e-5, atol=1e-5)
            for rows in (1, 2, 3, 4, 63, 64, 65, 129, 300):
                for first in (0, 7, 600 - rows):
                    for part in (x[first : first + rows].clone(), table[first : first + rows]):
                        assert torch.equal(network(part), whole[first : first + rows]), rows
            previous = torch.get_num_threads()
            try:
                torch.set_num_threads(1)
                assert torch.equal(network(table), whole)
            finally:
                torch.set_num_threads(previous)


@needs_onednn
def test_the_mode_runs_only_what_onednn_can_and_leaves_the_rest_to_f_linear(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = []
    kernel = cpu_linear._onednn_linear

    def counted(x: torch.Tensor, *rest: torch.Tensor | None) -> torch.Tensor:
        calls.append(tuple(x.shape))
        return kernel(x, *rest)  # type: ignore[arg-type]

    monkeypatch.setattr(cpu_linear, "_onednn_linear", counted)
    layer, x = nn.Linear(5, 3), _rows(100, 5)
    with CpuLinear(onednn=True):
        with torch.inference_mode():
            layer(x)
            assert calls == [(100, 5)]  # parameters need gradients, but none are recorded
            F.linear(input=x[:4], weight=layer.weight, bias=None)  # keywords bind too
            assert calls[1] == (cpu_linear.MIN_ROWS, 5)  # a small batch, padded
            assert layer(x[:0]).shape == (0, 3)  # no rows
            double = nn.Linear(5, 3).double()
            assert torch.equal(double(x.double()), F.linear(x.double(), double.weight, double.bias))
            batched = x.reshape(20, 5, 5)  # not a matrix
            assert torch.equal(layer(batched), F.linear(batched, layer.weight, layer.bias))
        assert len(calls) == 2
        trained = nn.Linear(5, 3)  # training keeps torch's own kernel, with its gradients
        trained(x).sum().backward()
        assert len(calls) == 2
        assert trained.weight.grad is not None
    with torch.inference_mode():
        layer(x)  # outside the mode
    assert len(calls) == 2


def _predictor(batch_size: int = 4096) -> Predictor:
    torch.manual_seed(0)
    columns = tuple(f"x{i}" for i in range(16))
    model = build_model(ModelConfig(architecture="mlp", latent_dim=4), (16,))
    values = np.random.default_rng(2).normal(size=(500, 16))
    scaler = fit_scaler(values, list(columns), "robust")
    return Predictor(model, TabularInputs(columns), scaler, batch_size=batch_size)


def _frame(rows: int = 5000) -> pd.DataFrame:
    values = np.random.default_rng(3).normal(size=(rows, 16))
    return pd.DataFrame(values, columns=[f"x{i}" for i in range(16)])


@pytest.fixture(params=["onednn", "f.linear"])
def kernel(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The predictor on each CPU kernel: oneDNN where this build has it, and F.linear."""
    if request.param == "onednn" and not onednn_linear_available():
        pytest.skip("this torch build has no usable oneDNN linear")
    if request.param == "f.linear":
        monkeypatch.setattr(predictor_module, "onednn_linear_available", lambda: False)
    return str(request.param)


def test_a_row_gets_the_same_bits_in_any_batch_on_either_kernel(kernel: str) -> None:
    frame = _frame()
    whole = _predictor().embeddings(frame)
    scores = _predictor().reconstruction_errors(frame)
    for rows in (slice(0, 1), slice(9, 10), slice(0, 4), slice(100, 112), slice(4000, 4600)):
        np.testing.assert_array_equal(_predictor().embeddings(frame.iloc[rows]), whole[rows])
        np.testing.assert_array_equal(
            _predictor().reconstruction_errors(frame.iloc[rows]), scores[rows]
        )
    # Batches of 7 rows, the last of them 1 row (5000 = 714 x 7 + 2, then 701 x 7 + 1).
    np.testing.assert_array_equal(_predictor(batch_size=7).embeddings(frame), whole)
    np.testing.assert_array_equal(
        _predictor(batch_size=7).embeddings(frame.iloc[:4908]), whole[:4908]
    )


@needs_onednn
def test_both_kernels_agree_within_float32_rounding(monkeypatch: pytest.MonkeyPatch) -> None:
    frame = _frame()
    onednn = _predictor().embed_and_score(frame)
    monkeypatch.setattr(predictor_module, "onednn_linear_available", lambda: False)
    reference = _predictor().embed_and_score(frame)
    for got, expected in zip(onednn, reference, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_samples_are_laid_out_for_the_kernel(kernel: str) -> None:
    predictor = _predictor()
    table = np.asfortranarray(np.random.default_rng(4).normal(size=(300, 16)).astype(np.float32))
    laid_out = predictor.model_layout(table)
    np.testing.assert_array_equal(laid_out, table)
    if kernel == "onednn":
        assert laid_out.flags.c_contiguous
    else:  # BLAS reads a column-major table in place
        assert laid_out is table
    np.testing.assert_array_equal(predictor.embed_samples(laid_out), predictor.embed_samples(table))
    reversed_rows = table[::-1]
    np.testing.assert_array_equal(predictor.model_layout(reversed_rows), reversed_rows)
