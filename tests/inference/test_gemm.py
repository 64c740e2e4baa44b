"""The GEMM backend of decoding models: NumpyLinear computes nn.Linear's function, in NumPy only
where nothing can need a gradient, and models decode to the same outputs with either backend."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from formers.inference import gemm
from formers.inference.gemm import NumpyLinear, gemm_backend, use_gemm
from formers.inference.generate import generate
from formers.inference.layout import use_inference_layout, use_standard_layout
from inference.helpers import (
    assert_falls_back,
    assert_same_gradients,
    assert_same_searches,
    decisive_model,
    tiny_gpt,
)

SRC = torch.tensor([[5, 6, 7, 8, 9, 2], [10, 11, 12, 2, 0, 0], [13, 5, 2, 0, 0, 0]])


@pytest.fixture(autouse=True)
def _every_layer(monkeypatch):
    """The tiny test layers go through NumPy too (real models: only the large ones)."""
    monkeypatch.setattr(gemm, "NUMPY_MIN_WEIGHTS", 0)


@pytest.fixture
def matmuls(monkeypatch) -> list[tuple[int, ...]]:
    """The shapes of the left operands NumPy multiplies, recorded."""
    calls: list[tuple[int, ...]] = []
    real = np.matmul

    def spy(a, b, *args, **kwargs):
        calls.append(a.shape)
        return real(a, b, *args, **kwargs)

    monkeypatch.setattr(gemm.np, "matmul", spy)
    return calls


def _pair(bias: bool, column_major: bool, dtype=torch.float32) -> tuple[nn.Linear, nn.Linear]:
    torch.manual_seed(0)
    ref = nn.Linear(24, 40, bias=bias, dtype=dtype)
    if column_major:  # what use_inference_layout stores
        ref.weight.data = ref.weight.data.t().contiguous().t()
    fast = copy.deepcopy(ref)
    use_gemm(fast, "numpy")
    assert type(fast) is NumpyLinear
    return ref, fast


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("column_major", [True, False])
@pytest.mark.parametrize("shape", [(5, 24), (2, 3, 24), (1, 1, 24)])
def test_numpy_linear_computes_nn_linear(matmuls, bias, column_major, shape):
    ref, fast = _pair(bias, column_major)
    x = torch.randn(shape)
    with torch.inference_mode():
        out = fast(x)
    assert matmuls == [(x.numel() // 24, 24)], "the product ran in NumPy, once"
    assert out.shape == (*shape[:-1], 40)
    torch.testing.assert_close(out, F.linear(x, ref.weight, ref.bias), rtol=1e-5, atol=1e-5)


def test_float64_and_a_non_contiguous_input_under_no_grad(matmuls):
    ref, fast = _pair(True, True, dtype=torch.float64)
    x = torch.randn(24, 6, dtype=torch.float64).t()  # (6, 24), transposed strides
    with torch.no_grad():
        out = fast(x)
    assert len(matmuls) == 1
    torch.testing.assert_close(out, F.linear(x, ref.weight, ref.bias), rtol=1e-12, atol=1e-12)


@torch.inference_mode()
def test_new_weights_are_seen_in_place_or_replaced(matmuls):
    ref, fast = _pair(True, True)
    x = torch.randn(3, 24)
    fast(x)  # the NumPy views are made here
    torch.manual_seed(1)
    other = nn.Linear(24, 40)
    fast.load_state_dict(other.state_dict())  # copied in place
    torch.testing.assert_close(fast(x), other(x), rtol=1e-5, atol=1e-5)
    for param, shape in ((fast.weight, (40, 24)), (fast.bias, (40,))):
        param.data = torch.randn(shape)  # new storage, one at a time
        expected = F.linear(x, fast.weight, fast.bias)
        torch.testing.assert_close(fast(x), expected, rtol=1e-5, atol=1e-5)
    assert len(matmuls) == 4


def test_with_gradients_it_is_nn_linear_exactly(matmuls):
    ref, fast = _pair(True, True)
    assert_same_gradients(ref, fast, torch.randn(4, 24, requires_grad=True))
    assert matmuls == [], "autograd cannot see NumPy: PyTorch's product"


@pytest.mark.parametrize(
    "case", ["two threads", "float16 input", "mixed dtypes", "tensor subclass"]
)
def test_it_falls_back_where_numpy_must_not_run(matmuls, case):
    ref, fast = _pair(True, False)
    x = torch.randn(3, 24)
    if case == "float16 input":
        ref, fast, x = ref.half(), fast.half(), x.half()
    elif case == "mixed dtypes":
        x = x.double()
    elif case == "tensor subclass":
        x = nn.Parameter(x, requires_grad=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(2 if case == "two threads" else threads)
    try:
        assert_falls_back(ref, fast, x, mixed_dtypes=case == "mixed dtypes")
    finally:
        torch.set_num_threads(threads)
    assert matmuls == []


def test_use_gemm_swaps_classes_in_place_and_back():
    model = decisive_model()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    params = [id(p) for p in model.parameters()]
    assert gemm_backend(model) == "torch"
    assert use_gemm(model, "numpy") is model
    assert gemm_backend(model) == "numpy"
    assert [id(p) for p in model.parameters()] == params, "the same parameters"
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    use_gemm(model, "torch")
    assert gemm_backend(model) == "torch"
    assert all(type(m) is nn.Linear for m in model.modules() if isinstance(m, nn.Linear))
    use_inference_layout(model, "numpy")
    use_standard_layout(model)
    assert gemm_backend(model) == "torch", "the standard layout is PyTorch's product too"


def test_small_layers_keep_pytorch_s_product(monkeypatch):
    model = nn.Sequential(nn.Linear(64, 64), nn.Linear(64, 256))
    monkeypatch.setattr(gemm, "NUMPY_MIN_WEIGHTS", 64 * 256)
    use_gemm(model, "numpy")
    assert [type(m) for m in model] == [nn.Linear, NumpyLinear]
    assert gemm_backend(model) == "mixed"


def test_only_cpu_weights_change_backend():
    model = decisive_model()
    first = next(m for m in model.modules() if isinstance(m, nn.Linear))
    first.weight = nn.Parameter(torch.empty(first.weight.shape, device="meta"))
    use_gemm(model, "numpy")
    assert type(first) is nn.Linear
    assert gemm_backend(model) == "mixed"


@torch.inference_mode()
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_greedy_and_beam_search_give_the_same_outputs(matmuls, dtype):
    ref = decisive_model().to(dtype)
    fast = use_inference_layout(copy.deepcopy(ref), "numpy")
    assert_same_searches(ref, fast, SRC, tol=1e-10 if dtype == torch.float64 else 1e-4)
    assert matmuls, "decoding multiplied in NumPy"


@torch.inference_mode()
def test_gpt_generation_is_the_same(matmuls):
    ref = tiny_gpt(std=0.4)
    fast = use_inference_layout(copy.deepcopy(ref), "numpy")
    prompt = [3, 7, 11]
    a = generate(ref, prompt, max_new_tokens=20, temperature=0.0)
    b = generate(fast, prompt, max_new_tokens=20, temperature=0.0)
    assert matmuls
    assert a == b


def test_numpy_blas_runs_one_thread_once_in_use():
    if not gemm._numpy_blas():
        pytest.skip("threadpoolctl does not see NumPy's BLAS here")
    use_gemm(decisive_model(), "numpy")
    assert all(lib.num_threads == 1 for lib in gemm._numpy_blas())


@pytest.mark.parametrize(
    ("vendor", "blas", "expected"),
    [
        ("AuthenticAMD", "openblas", "numpy"),
        ("AuthenticAMD", "mkl", "torch"),
        ("GenuineIntel", "openblas", "torch"),
        (None, "openblas", "torch"),
    ],
)
def test_auto_picks_numpy_on_amd_with_openblas_only(monkeypatch, vendor, blas, expected):
    """On a CPU without AVX-512 (with it, AMD gets oneDNN: test_onednn)."""
    monkeypatch.setattr(gemm, "cpu_vendor", lambda: vendor)
    monkeypatch.setattr(gemm, "cpu_capability", lambda: "AVX2")
    monkeypatch.setattr(gemm, "numpy_blas_name", lambda: blas)
    monkeypatch.delenv(gemm.ENV, raising=False)
    assert gemm.resolve_backend() == expected
    assert gemm.resolve_backend("auto") == expected
    monkeypatch.setenv(gemm.ENV, "torch")
    assert gemm.resolve_backend() == "torch", "the environment variable overrides auto"
    assert gemm.resolve_backend("numpy") == "numpy", "an explicit backend overrides both"


def test_a_wrong_backend_names_the_valid_ones(monkeypatch):
    with pytest.raises(ValueError, match=r"backend='mkl'.*\['auto', 'torch', 'numpy', 'onednn'\]"):
        use_gemm(decisive_model(), "mkl")
    monkeypatch.setenv(gemm.ENV, "openblas")
    valid = r"\['auto', 'torch', 'numpy', 'onednn'\]"
    with pytest.raises(ValueError, match=r"FORMERS_GEMM='openblas'.*" + valid):
        use_inference_layout(decisive_model())


def test_cpu_vendor_reads_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\n")
    assert gemm.cpu_vendor(info) == "AuthenticAMD"
    info.write_text("processor\t: 0\nmodel name\t: something\n")
    assert gemm.cpu_vendor(info) is None
    assert gemm.cpu_vendor(tmp_path / "missing") is None
