"""Linear layers for CPU inference on either kernel, and the predictor on each."""

from __future__ import annotations

import contextlib
import copy
import itertools
from typing import Any

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
from aeops.scoring._cpu_linear import OneDnnLinear, onednn_linear_available

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
def test_linear_values_and_a_row_gets_the_same_bits_in_any_padded_batch(
    onednn: bool, widths: tuple[int, ...]
) -> None:
    if onednn and not onednn_linear_available():
        pytest.skip("this torch build has no usable oneDNN linear")
    network, x = _mlp(widths), _rows(640, widths[0])
    table = torch.from_numpy(np.asfortranarray(x.numpy()))  # as the reader lays it out
    with torch.inference_mode():
        expected = network(x)
        with OneDnnLinear() if onednn else contextlib.nullcontext():
            whole = network(table)
            torch.testing.assert_close(whole, expected, rtol=1e-5, atol=1e-5)
            for rows in (64, 128, 192, 320):  # the predictor pads to multiples of 64
                for first in (0, 7, 640 - rows):
                    for part in (x[first : first + rows].clone(), table[first : first + rows]):
                        assert torch.equal(network(part), whole[first : first + rows]), rows
            previous = torch.get_num_threads()
            try:
                torch.set_num_threads(1)
                assert torch.equal(network(table), whole)
            finally:
                torch.set_num_threads(previous)


@pytest.mark.parametrize("onednn", [True, False], ids=["onednn", "f.linear"])
def test_strided_biases_and_odd_shapes_get_f_linear_answers(onednn: bool) -> None:
    if onednn and not onednn_linear_available():
        pytest.skip("this torch build has no usable oneDNN linear")
    x, weight = _rows(70, 5), _rows(3, 5)
    with torch.inference_mode(), OneDnnLinear() if onednn else contextlib.nullcontext():
        for bias in (_rows(1, 6)[0, ::2], torch.tensor(1.5).expand(3), None):
            torch.testing.assert_close(
                F.linear(x, weight, bias),
                (x.double() @ weight.double().T + (0 if bias is None else bias.double())).float(),
            )
        # Shapes F.linear broadcasts and oneDNN would refuse stay with F.linear.
        assert F.linear(x, weight, torch.ones(1)).shape == (70, 3)
        assert F.linear(x, weight[0]).shape == (70,)
        assert F.linear(x[:, :0], weight[:, :0]).shape == (70, 3)


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
    with OneDnnLinear():
        with torch.inference_mode():
            layer(x)
            assert calls == [(100, 5)]  # parameters need gradients, but none are recorded
            F.linear(input=x[:4], weight=layer.weight, bias=None)  # keywords bind too
            assert calls[1] == (4, 5)
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


def test_a_missing_or_wrong_onednn_leaves_the_predictor_on_f_linear(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    probe = onednn_linear_available.__wrapped__  # uncached

    def missing(*args: object) -> torch.Tensor:
        raise RuntimeError("no such operator")

    monkeypatch.setattr(cpu_linear, "_onednn_linear", missing)
    assert probe() is False
    monkeypatch.setattr(cpu_linear, "_onednn_linear", lambda x, w, b: F.linear(x, w, b) + 1e-3)
    assert probe() is False


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
    """The predictor on each CPU kernel: oneDNN where this build has it, and F.linear.

    Counts oneDNN's calls, so a test can check that the predictor really uses it.
    """
    if request.param == "onednn" and not onednn_linear_available():
        pytest.skip("this torch build has no usable oneDNN linear")
    if request.param == "f.linear":
        monkeypatch.setattr(predictor_module, "onednn_linear_available", lambda: False)
    kernel_calls.clear()
    onednn = cpu_linear._onednn_linear

    def counted(*args: torch.Tensor | None) -> torch.Tensor:
        kernel_calls.append(1)
        return onednn(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(cpu_linear, "_onednn_linear", counted)
    return str(request.param)


kernel_calls: list[int] = []


def test_the_predictor_runs_on_the_kernel_it_chose(kernel: str) -> None:
    _predictor().embeddings(_frame(100))
    assert bool(kernel_calls) == (kernel == "onednn")


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


_KINDS = {  # every network, and the activations and penalty that compute tails apart
    "mlp relu": ("vanilla", "mlp", (16,), {}),
    "mlp silu": ("vanilla", "mlp", (16,), {"activation": "silu"}),
    "mlp gelu, 5 features": ("denoising", "mlp", (5,), {"activation": "gelu"}),
    "sparse kl": ("sparse", "mlp", (16,), {"sparsity": {"kind": "kl"}}),
    "vae": ("vae", "mlp", (16,), {}),
    "conv": ("vanilla", "conv", (1, 12, 12), {"hidden_dims": (4, 8)}),
    "conv bce": ("vanilla", "conv", (1, 12, 12), {"reconstruction_loss": "bce"}),
    "recurrent": ("vanilla", "recurrent", (10, 3), {}),
}


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("name", list(_KINDS))
def test_every_model_kind_gives_a_sample_the_same_bits_in_any_batch(
    kernel: str, name: str, threads: int
) -> None:
    kind, architecture, shape, extra = _KINDS[name]
    torch.manual_seed(0)
    config = ModelConfig(kind=kind, architecture=architecture, latent_dim=4, **extra)
    model = build_model(config, shape)
    samples = np.random.default_rng(4).uniform(size=(300, *shape)).astype(np.float32)
    columns = tuple(f"x{i}" for i in range(shape[-1]))
    scaler = fit_scaler(samples.reshape(-1, shape[-1]), list(columns), "standard")
    predictor = Predictor(model, TabularInputs(columns), scaler, batch_size=128)
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        whole = predictor.encode_samples(samples)
        for rows in (1, 3, 5, 63, 64, 65, 200):
            for first in (0, 37):
                part = predictor.encode_samples(samples[first : first + rows])
                for got, expected in zip(part, whole, strict=True):
                    np.testing.assert_array_equal(got, expected[first : first + rows])
    finally:
        torch.set_num_threads(previous)


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
    assert predictor.wants_row_major(table) == (kernel == "onednn")


@pytest.mark.parametrize("reverse", [False, True])
def test_a_row_major_copy_goes_into_the_array_given(reverse: bool) -> None:
    table = np.asfortranarray(np.random.default_rng(5).normal(size=(300, 16)).astype(np.float32))
    table = table[::-1] if reverse else table
    out = np.full(table.shape, np.nan, np.float32)
    copied = predictor_module._row_major(table, out)
    assert copied.data_ptr() == out.ctypes.data
    np.testing.assert_array_equal(out, table)
    with pytest.raises(ValueError, match=r"out must be a row-major \(300, 16\) float32"):
        predictor_module._row_major(table, np.empty((300, 16), np.float32, order="F"))


def _stack(activation: type[nn.Module], bias: bool = True) -> nn.Sequential:
    """An MLP stack as ``networks.mlp`` builds them, dropout included."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(9, 32, bias=bias),
        activation(),
        nn.Dropout(0.2),
        nn.Linear(32, 16, bias=bias),
        activation(),
        nn.Dropout(0.2),
        nn.Linear(16, 4, bias=bias),
    ).eval()


class _Pair(nn.Module):
    def __init__(self, first: nn.Module, second: nn.Module) -> None:
        super().__init__()
        self.first, self.second, self.scale = first, second, nn.Parameter(torch.tensor(2.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x)) * self.scale


@needs_onednn
@pytest.mark.parametrize(
    ("activation", "bias"),
    [(nn.ReLU, True), (nn.ReLU, False), (nn.SiLU, True), (nn.GELU, True), (nn.Tanh, True)],
)
def test_a_direct_twin_gives_the_bits_of_its_model_in_the_mode(
    activation: type[nn.Module], bias: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _Pair(_stack(activation, bias), nn.Sequential(nn.Linear(4, 9), nn.ReLU())).eval()
    twin = cpu_linear.direct_twin(model)
    assert isinstance(twin.first, cpu_linear._DirectStack)
    assert isinstance(twin.second, cpu_linear._DirectStack)
    assert twin.scale is model.scale  # parameters shared, nothing copied
    assert type(model.first) is nn.Sequential  # the model itself is left as it was
    calls, through_the_mode = [], []
    kernel, handler = cpu_linear._onednn_linear, OneDnnLinear.__torch_function__

    def counted(*args: torch.Tensor | None) -> torch.Tensor:
        calls.append(args[0].shape)
        return kernel(*args)

    def seen(self: OneDnnLinear, func: Any, *rest: Any, **kwargs: Any) -> Any:
        through_the_mode.append(func)
        return handler(self, func, *rest, **kwargs)

    monkeypatch.setattr(cpu_linear, "_onednn_linear", counted)
    monkeypatch.setattr(OneDnnLinear, "__torch_function__", seen)
    x = _rows(640, 9)
    # Values that overflow float32 on the way: NaN after a layer (inf - inf), which
    # torch's ReLU keeps and oneDNN's fused one would make 0.
    x[1, :3] = torch.tensor([float("inf"), 3e38, float("-inf")])
    x[2, 0] = float("nan")
    with torch.inference_mode(), OneDnnLinear():
        expected = model(x)
        assert len(calls) == 4  # the mode: every linear layer on oneDNN
        assert through_the_mode.count(F.linear) == 4
        through_the_mode.clear()
        got = twin(x)
    assert len(calls) == 8  # the twin: the same kernel, called directly
    assert F.linear not in through_the_mode
    assert torch.isnan(expected[1:3]).any()
    np.testing.assert_array_equal(got.view(torch.int32).numpy(), expected.view(torch.int32).numpy())


@needs_onednn
def test_a_direct_twin_runs_its_stacks_as_they_are_where_it_cannot_go_direct() -> None:
    model = _Pair(_stack(nn.ReLU), nn.Sequential(nn.Linear(4, 9)))
    twin = cpu_linear.direct_twin(model.eval())
    x = _rows(64, 9)
    with OneDnnLinear():
        trained = twin(x)  # gradients to record: the modules, on F.linear
        trained.sum().backward()
        assert model.first[0].weight.grad is not None
        with torch.inference_mode():
            torch.testing.assert_close(twin(x), trained.detach(), rtol=1e-5, atol=1e-5)
            double = copy.deepcopy(model).double()  # not the kernel's type: F.linear
            assert torch.equal(cpu_linear.direct_twin(double)(x.double()), double(x.double()))
            evaluated = twin.first(x)
            for layer in (model.first, model.first[2]):  # the stack, or one dropout in it
                layer.train()  # dropout is not the identity now: the stack runs as it is
                torch.manual_seed(1)
                dropped = twin.first(x)
                torch.manual_seed(1)
                assert torch.equal(dropped, model.first(x))
                assert not torch.equal(dropped, evaluated)
                model.eval()
    plain = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))  # a layer it does not know
    assert cpu_linear.direct_twin(_Pair(plain, nn.Identity())).first is plain
    hooked = _stack(nn.ReLU)  # a hook the direct calls would skip
    hooked[0].register_forward_hook(lambda *args: None)
    assert cpu_linear.direct_twin(_Pair(hooked, nn.Identity())).first is hooked


@needs_onednn
@pytest.mark.parametrize(
    "layers",
    [
        (nn.ReLU(), nn.Linear(9, 5), nn.ReLU()),  # a ReLU on the caller's input
        (nn.ReLU(inplace=True), nn.Linear(9, 5)),  # which the module changes, as before
        (nn.GELU(), nn.ReLU(), nn.Linear(9, 5), nn.ReLU(), nn.ReLU()),
        (nn.Linear(9, 5), nn.Dropout(0.5), nn.ReLU(inplace=True), nn.Tanh(), nn.ReLU()),
    ],
    ids=["relu first", "inplace relu first", "activations around", "dropout between"],
)
def test_a_direct_stack_changes_only_what_the_stack_itself_changes(
    layers: tuple[nn.Module, ...],
) -> None:
    torch.manual_seed(0)
    stack = nn.Sequential(*layers).eval()
    twin = cpu_linear.direct_twin(_Pair(stack, nn.Identity()))
    assert isinstance(twin.first, cpu_linear._DirectStack)
    x = _rows(64, 9)
    with torch.inference_mode(), OneDnnLinear():
        given, expected_input = x.clone(), x.clone()
        expected = stack(expected_input)
        got = twin.first(given)
    assert torch.equal(got, expected)
    assert torch.equal(given, expected_input)  # the input as the stack itself leaves it
    assert torch.equal(given, x) == torch.equal(expected_input, x)
