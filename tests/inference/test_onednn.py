"""oneDNN's packed products: OneDnnLinear computes nn.Linear's function, in oneDNN only where
nothing can need a gradient, follows new weights, survives a deep copy, and decodes as the
model with PyTorch's product does; the fused query, key and value product gives the same bits
as three products."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from formers.decoding import greedy_search
from formers.inference import gemm, onednn
from formers.inference.gemm import gemm_backend, row_product, use_gemm
from formers.inference.layout import use_inference_layout, use_standard_layout
from formers.inference.onednn import OneDnnLinear, fuse_onednn, fusion_checked
from inference.helpers import (
    assert_falls_back,
    assert_same_gradients,
    assert_same_searches,
    decisive_model,
)

pytestmark = pytest.mark.skipif(not onednn.onednn_available(), reason="this PyTorch has no oneDNN")
# the bit-for-bit claims hold on the AVX-512 code measured; other ISAs are not fused
checked_isa = pytest.mark.skipif(not fusion_checked(), reason="oneDNN's AVX-512 code only")
SRC = torch.tensor([[5, 6, 7, 8, 9, 2], [10, 11, 12, 2, 0, 0], [13, 5, 2, 0, 0, 0]])


@pytest.fixture(autouse=True)
def _every_layer(monkeypatch):
    """The tiny test layers go through oneDNN too (real models: only the large ones), at every
    row count whatever the CPU (the one-row rule has its own tests)."""
    monkeypatch.setattr(gemm, "ONEDNN_MIN_WEIGHTS", 0)
    monkeypatch.setattr(gemm, "onednn_few_rows", lambda: (1, onednn.torch_rows))


@pytest.fixture
def products(monkeypatch) -> list[int]:
    """One entry per oneDNN product made (module forward and the flat form alike)."""
    calls: list[int] = []
    real = onednn.packed_product

    def spy(packed, bias):
        product = real(packed, bias)
        return lambda x: calls.append(1) or product(x)

    monkeypatch.setattr(onednn, "packed_product", spy)
    return calls


def _pair(bias: bool = True, column_major: bool = False) -> tuple[nn.Linear, OneDnnLinear]:
    torch.manual_seed(0)
    ref = nn.Linear(24, 40, bias=bias)
    if column_major:  # what use_inference_layout stores
        ref.weight.data = ref.weight.data.t().contiguous().t()
    fast = use_gemm(copy.deepcopy(ref), "onednn")
    assert type(fast) is OneDnnLinear
    return ref, fast


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("column_major", [True, False])
@pytest.mark.parametrize("shape", [(5, 24), (2, 3, 24), (1, 1, 24), (0, 24)])
def test_onednn_linear_computes_nn_linear(products, bias, column_major, shape):
    ref, fast = _pair(bias, column_major)
    x = torch.randn(shape)
    with torch.inference_mode():
        out = fast(x)
    assert products == [1], "the product ran in oneDNN, once"
    assert out.shape == (*shape[:-1], 40)
    torch.testing.assert_close(out, F.linear(x, ref.weight, ref.bias), rtol=1e-5, atol=1e-5)


def test_a_non_contiguous_input(products):
    ref, fast = _pair()
    x = torch.randn(24, 6).t()  # (6, 24), transposed strides
    with torch.no_grad():
        torch.testing.assert_close(fast(x), ref(x), rtol=1e-5, atol=1e-5)
    assert products == [1]


@torch.inference_mode()
def test_new_weights_are_packed_again(products):
    ref, fast = _pair()
    x = torch.randn(3, 24)
    fast(x)
    torch.manual_seed(1)
    other = nn.Linear(24, 40)
    fast.load_state_dict(other.state_dict())  # copied in place: the version counter moves
    torch.testing.assert_close(fast(x), other(x), rtol=1e-5, atol=1e-5)
    fast.weight.data = torch.randn(40, 24)  # new storage
    torch.testing.assert_close(fast(x), F.linear(x, fast.weight, fast.bias), rtol=1e-5, atol=1e-5)
    fast.bias.add_(1.0)  # the bias is read at every call
    torch.testing.assert_close(fast(x), F.linear(x, fast.weight, fast.bias), rtol=1e-5, atol=1e-5)


def test_with_gradients_it_is_nn_linear_exactly(products):
    ref, fast = _pair()
    assert_same_gradients(ref, fast, torch.randn(4, 24, requires_grad=True))
    assert products == [], "oneDNN's packed product has no backward: PyTorch's product"


@pytest.mark.parametrize("case", ["float64", "mixed dtypes", "tensor subclass"])
def test_it_falls_back_where_onednn_must_not_run(products, case):
    ref, fast = _pair()
    x = torch.randn(3, 24)
    if case == "float64":
        ref, fast, x = ref.double(), fast.double(), x.double()
    elif case == "mixed dtypes":
        x = x.double()
    else:
        x = nn.Parameter(x, requires_grad=False)
    assert_falls_back(ref, fast, x, mixed_dtypes=case == "mixed dtypes")
    assert products == []


def test_it_runs_at_any_thread_count(products):
    ref, fast = _pair()
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with torch.inference_mode():
            torch.testing.assert_close(fast(x := torch.randn(3, 24)), ref(x), rtol=1e-5, atol=1e-5)
    finally:
        torch.set_num_threads(threads)
    assert products == [1]


def test_use_gemm_swaps_classes_and_keeps_parameters(monkeypatch):
    monkeypatch.setattr(gemm, "NUMPY_MIN_WEIGHTS", 0)
    model = decisive_model()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    params = [id(p) for p in model.parameters()]
    use_gemm(model, "onednn")
    assert gemm_backend(model) == "onednn"
    assert [id(p) for p in model.parameters()] == params
    assert model.state_dict().keys() == state.keys()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    use_gemm(model, "numpy")
    assert gemm_backend(model) == "numpy"
    assert not any(type(m) is OneDnnLinear for m in model.modules())
    use_inference_layout(model, "onednn")
    assert gemm_backend(model) == "onednn"
    use_standard_layout(model)
    assert gemm_backend(model) == "torch"


def test_small_and_non_float32_layers_keep_pytorch_s_product(monkeypatch):
    model = nn.Sequential(nn.Linear(64, 64), nn.Linear(64, 256), nn.Linear(64, 256).double())
    monkeypatch.setattr(gemm, "ONEDNN_MIN_WEIGHTS", 64 * 256)
    use_gemm(model, "onednn")
    assert [type(m) for m in model] == [nn.Linear, OneDnnLinear, nn.Linear]
    assert gemm_backend(model) == "mixed"


@torch.inference_mode()
def test_a_deep_copy_packs_its_own(products):
    model = use_inference_layout(decisive_model(), "onednn")
    twin = copy.deepcopy(model)  # an opaque oneDNN tensor could not be copied
    options = dict(max_len_a=1.0, max_len_b=6)
    assert torch.equal(greedy_search(twin, SRC, **options).tokens,
                       greedy_search(model, SRC, **options).tokens)  # fmt: skip
    assert products


@torch.inference_mode()
def test_greedy_and_beam_search_give_the_same_outputs(products):
    ref = decisive_model()
    fast = use_inference_layout(copy.deepcopy(ref), "onednn")
    assert_same_searches(ref, fast, SRC, tol=1e-4)
    assert products, "decoding multiplied in oneDNN"


def _layers(outs: tuple[int, ...], d_in: int, bias: bool = True) -> list[OneDnnLinear]:
    torch.manual_seed(sum(outs) + d_in)
    return [use_gemm(nn.Linear(d_in, out, bias=bias), "onednn") for out in outs]


@checked_isa
@torch.inference_mode()
@pytest.mark.parametrize(("d_in", "outs"), [(512, (512, 512, 512)), (40, (40, 10, 10)),
                                             (33, (33, 33, 33)), (24, (40, 33, 7))])  # fmt: skip
@pytest.mark.parametrize("bias", [True, False])
def test_the_fused_product_gives_the_bits_of_three(d_in, outs, bias):
    """The flat step fuses a self-attention's three products only because they are the same
    bits (oneDNN sums each output column in one order, whatever the columns beside it)."""
    layers = _layers(outs, d_in, bias)
    for rows in (1, 3, 32, 128):
        x = torch.randn(rows, d_in)
        fused = fuse_onednn(layers, x)
        assert torch.equal(fused(x), torch.cat([layer(x) for layer in layers], dim=1))


@checked_isa
@torch.inference_mode()
def test_a_row_is_the_same_in_any_batch():
    """What a beam search relies on when the batch shrinks: a row's product does not depend on
    the other rows."""
    (layer,) = _layers((512,), 512)
    x = torch.randn(128, 512)
    alone = torch.cat([layer(x[i : i + 1]) for i in range(128)])
    assert torch.equal(layer(x), alone)
    assert torch.equal(layer(x[:7]), alone[:7])


@checked_isa
@torch.inference_mode()
def test_the_fused_product_follows_new_weights_and_biases():
    layers = _layers((24, 24, 24), 24)
    x = torch.randn(3, 24)
    fuse_onednn(layers, x)
    packed = onednn._FUSED[layers[0]][1]
    fuse_onednn(layers, x)
    assert onednn._FUSED[layers[0]][1] is packed, "stacked and packed once per weights"
    layers[1].load_state_dict(nn.Linear(24, 24).state_dict())
    layers[2].bias.add_(1.0)
    again = fuse_onednn(layers, x)
    assert onednn._FUSED[layers[0]][1] is not packed
    assert torch.equal(again(x), torch.cat([layer(x) for layer in layers], dim=1))


@checked_isa
def test_fusing_refuses_what_it_cannot_fuse():
    layers = _layers((24, 24, 24), 24)
    x = torch.randn(3, 24)
    mixed = [*layers[:2], use_gemm(nn.Linear(24, 24, bias=False), "onednn")]
    assert fuse_onednn(mixed, x) is None, "biases on some layers only"
    assert fuse_onednn([*layers[:2], nn.Linear(24, 24)], x) is None, "PyTorch's product"
    assert fuse_onednn(layers, x.double()) is None, "oneDNN would not run on these rows"
    with torch.enable_grad():
        assert fuse_onednn(layers, x) is None


def test_row_product_is_the_packed_product_where_onednn_runs(products):
    ref, fast = _pair()
    x = torch.randn(3, 24)
    with torch.inference_mode():
        flat = row_product(fast, x)
        assert flat is not fast
        assert torch.equal(flat(x), fast(x))
        assert row_product(fast, x.double()) is fast, "the module, which falls back"


@pytest.mark.parametrize(
    ("vendor", "capability", "available", "blas", "expected"),
    [
        ("AuthenticAMD", "AVX512", True, "openblas", "onednn"),
        ("AuthenticAMD", "AVX512", False, "openblas", "numpy"),
        ("AuthenticAMD", "AVX2", True, "openblas", "numpy"),
        ("AuthenticAMD", "AVX2", True, "mkl", "torch"),
        ("GenuineIntel", "AVX512", True, "openblas", "onednn"),
        ("GenuineIntel", "AVX512", False, "openblas", "torch"),
        ("GenuineIntel", "AVX2", True, "openblas", "torch"),
        (None, "AVX512", True, "openblas", "torch"),
    ],
)
def test_auto_picks_onednn_with_avx512(monkeypatch, vendor, capability, available, blas, expected):
    monkeypatch.setattr(gemm, "cpu_vendor", lambda: vendor)
    monkeypatch.setattr(gemm, "cpu_capability", lambda: capability)
    monkeypatch.setattr(gemm, "onednn_available", lambda: available)
    monkeypatch.setattr(gemm, "numpy_blas_name", lambda: blas)
    monkeypatch.delenv(gemm.ENV, raising=False)
    assert gemm.resolve_backend() == expected
    monkeypatch.setenv(gemm.ENV, "numpy")
    assert gemm.resolve_backend() == "numpy", "the environment variable overrides auto"
    assert gemm.resolve_backend("onednn") == "onednn", "an explicit backend overrides both"


def test_onednn_without_onednn_is_refused(monkeypatch):
    monkeypatch.setattr(gemm, "onednn_available", lambda: False)
    with pytest.raises(ValueError, match="needs a PyTorch built with oneDNN"):
        use_gemm(decisive_model(), "onednn")


@pytest.mark.parametrize("backend", ["onednn", "numpy"])
def test_int8_quantizes_the_layers_of_a_converted_model(monkeypatch, backend):
    """quantize_dynamic matches exact types: a converted model's layers are quantized too, to
    the same int8 model as the plain one's, and the converted model is left as it was."""
    from formers.inference.int8 import quantize_int8

    monkeypatch.setattr(gemm, "NUMPY_MIN_WEIGHTS", 0)
    plain = decisive_model()
    converted = use_inference_layout(copy.deepcopy(plain), backend)
    ours, theirs = quantize_int8(converted), quantize_int8(plain)
    assert not any(isinstance(m, nn.Linear) for m in ours.modules()), "every layer is int8"
    assert gemm_backend(converted) == backend
    with torch.inference_mode():
        options = dict(max_len_a=1.0, max_len_b=6)
        a, b = greedy_search(ours, SRC, **options), greedy_search(theirs, SRC, **options)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.scores, b.scores)


def test_no_fusion_where_it_was_not_checked(monkeypatch):
    monkeypatch.setattr(onednn, "fusion_checked", lambda: False)
    layers = _layers((24, 24, 24), 24)
    with torch.inference_mode():
        assert fuse_onednn(layers, torch.randn(3, 24)) is None


def _layer_and_flat_form(layer: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """``layer(x)``, and its flat form (:func:`row_product`, which takes ``(N, in)`` rows) on
    ``x``'s rows, shaped as ``x``'s output."""
    rows = x.reshape(-1, x.size(-1))
    return [layer(x), row_product(layer, x)(rows).view(*x.shape[:-1], layer.out_features)]


@pytest.mark.parametrize("shape", [(1, 24), (1, 1, 24), (3, 24), (2, 2, 24), (0, 24)])
@torch.inference_mode()
def test_fewer_rows_than_min_rows_take_pytorch_s_product(monkeypatch, products, shape):
    """On Intel CPUs (``onednn_few_rows() == (2, torch_rows)``) one-row products stay with MKL:
    the layer and its flat form give F.linear's bits there, oneDNN's product from two rows up."""
    monkeypatch.setattr(gemm, "onednn_few_rows", lambda: (2, onednn.torch_rows))
    ref, fast = _pair()
    assert fast.min_rows == 2
    x = torch.randn(shape)
    few = x.numel() // 24 < 2
    for out in _layer_and_flat_form(fast, x):
        if few:
            assert torch.equal(out, F.linear(x, fast.weight, fast.bias))
        else:
            torch.testing.assert_close(out, ref(x))
    assert len(products) == (0 if few else 2)


def _numpy_linear(x: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    """NumPy's product of ``(..., in)`` rows, computed here: the bits OpenBLAS gives them."""
    rows = x.reshape(-1, x.size(-1)).numpy()
    out = rows @ layer.weight.detach().T.numpy() + layer.bias.detach().numpy()
    return torch.from_numpy(out).view(*x.shape[:-1], layer.out_features)


@pytest.mark.parametrize("shape", [(1, 24), (1, 1, 24), (3, 24), (1, 3, 24), (0, 24)])
@torch.inference_mode()
def test_fewer_rows_than_min_rows_take_numpy_s_product(monkeypatch, products, shape):
    """On AMD CPUs (``onednn_few_rows() == (2, numpy_rows)``) one-row products multiply in
    NumPy's OpenBLAS: its bits in the layer and its flat form, oneDNN's from two rows up; with
    two PyTorch threads (where NumPy may not run) oneDNN's at one row too."""
    monkeypatch.setattr(gemm, "onednn_few_rows", lambda: (2, gemm.numpy_rows))
    ref, fast = _pair(column_major=True)
    assert (fast.min_rows, fast.few_rows) == (2, gemm.numpy_rows)
    x = torch.randn(shape)
    few = x.numel() // 24 < 2
    for out in _layer_and_flat_form(fast, x):
        if few:
            assert torch.equal(out, _numpy_linear(x, fast))
        else:
            torch.testing.assert_close(out, ref(x))
    assert len(products) == (0 if few else 2)
    products.clear()
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for out in _layer_and_flat_form(fast, x):
            torch.testing.assert_close(out, ref(x))
    finally:
        torch.set_num_threads(before)
    assert len(products) == 2, "oneDNN at every row count where NumPy may not run"


@torch.inference_mode()
def test_numpy_s_few_row_product_follows_new_weights(monkeypatch):
    """The NumPy views a oneDNN layer's one-row products use are kept on the layer between
    calls: a replaced weight (``weight.data = ...``) or an in-place change still shows."""
    monkeypatch.setattr(gemm, "onednn_few_rows", lambda: (2, gemm.numpy_rows))
    _, fast = _pair(column_major=True)
    x = torch.randn(1, 24)
    assert torch.equal(fast(x), _numpy_linear(x, fast))
    fast.weight.data = torch.randn(24, 40).t()  # column-major, as the inference layout keeps it
    assert torch.equal(fast(x), _numpy_linear(x, fast)), "the replaced weight"
    fast.bias.data = torch.randn(40)
    assert torch.equal(fast(x), _numpy_linear(x, fast)), "the replaced bias"
    fast.weight.mul_(2)  # in place: the views show it
    assert torch.equal(fast(x), _numpy_linear(x, fast)), "an in-place change"


def _torch_linear(x: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    return F.linear(x, layer.weight, layer.bias)


@checked_isa
@torch.inference_mode()
@pytest.mark.parametrize(
    ("rule", "reference", "other"),
    [
        (onednn.torch_rows, _torch_linear, gemm.numpy_rows),
        (gemm.numpy_rows, _numpy_linear, onednn.torch_rows),
    ],
)
def test_the_fused_product_below_min_rows_is_the_three_layers(monkeypatch, rule, reference, other):
    """Below ``min_rows`` the fused product is the three layers' own few-row products side by
    side (MKL's on Intel CPUs, NumPy's on AMD ones); layers that disagree are not fused."""
    monkeypatch.setattr(gemm, "onednn_few_rows", lambda: (2, rule))
    layers = _layers((24, 24, 24), 24)
    one, many = torch.randn(1, 24), torch.randn(4, 24)
    fused = fuse_onednn(layers, one)
    assert torch.equal(fused(one), torch.cat([reference(one, m) for m in layers], 1))
    assert torch.equal(fused(many), torch.cat([m(many) for m in layers], 1))
    layers[2].few_rows = other
    assert fuse_onednn(layers, one) is None, "layers that disagree on the few-row product"
    layers[2].few_rows, layers[2].min_rows = rule, 1
    assert fuse_onednn(layers, one) is None, "layers that disagree on min_rows"


@pytest.mark.parametrize(
    ("vendor", "blas", "expected"),
    [
        ("GenuineIntel", "openblas", (2, onednn.torch_rows)),
        ("AuthenticAMD", "openblas", (2, gemm.numpy_rows)),
        ("AuthenticAMD", "mkl", (1, onednn.torch_rows)),
        (None, "openblas", (1, onednn.torch_rows)),
    ],
)
def test_few_rows_by_vendor(monkeypatch, vendor, blas, expected):
    monkeypatch.undo()  # the autouse fixture's override
    monkeypatch.setattr(gemm, "cpu_vendor", lambda: vendor)
    monkeypatch.setattr(gemm, "numpy_blas_name", lambda: blas)
    assert gemm.onednn_few_rows() == expected
