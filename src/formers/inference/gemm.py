"""Which library multiplies a decoding model's ``nn.Linear`` products on a CPU.

PyTorch's CPU wheels do their float32 products in Intel MKL, which is fast on Intel CPUs and much
slower on AMD ones. On one core of the 2-core AMD EPYC of Zen 2 we measure (AVX2), NumPy's
OpenBLAS (the BLAS its PyPI wheels ship) multiplies a layer of 512 x 512 weights or more, read
from memory as a decoding step reads it, at 0.88-2.52x MKL's speed (median 1.19x; 1.57x at 4
rows); smaller layers lose (0.55-1.13x, median 0.90x), because NumPy's call costs more than
OpenBLAS saves there (``benchmarks/gemm_shapes.py``). A whole decode of a base-sized model runs
1.14-1.51x faster, or as fast at 128 rows (``benchmarks/decode_attempts.py``). On an AMD CPU
with AVX-512 (a 2-core EPYC of Zen 5), MKL and OpenBLAS both run AVX2 code, and oneDNN's packed
products (:mod:`formers.inference.onednn`) are faster than either. On a 2-core Xeon with
AVX-512 and AMX, MKL is fastest at one row but as slow at 4 rows as at 32, where oneDNN is
1.35-1.86x faster; there oneDNN multiplies from two rows up (whole decodes with beam 4 of one
sentence 1.44x faster, the others 0.97-1.09x, a one-off interleaved run). On a 2-core EPYC of
Zen 4 (AVX-512) oneDNN is the fastest from 4 rows up too, but at one row OpenBLAS is: there
one-row products multiply in OpenBLAS (greedy decodes of one sentence 1.18-1.20x faster, two
interleaved runs). CTranslate2 uses MKL on ``GenuineIntel`` CPUs, oneDNN elsewhere.

:class:`NumpyLinear` and :class:`~formers.inference.onednn.OneDnnLinear` are ``nn.Linear``
layers (same parameters, names and state dict) whose product runs in NumPy or in oneDNN when
nothing can need its gradient. :func:`use_gemm` gives a model's linear layers the backend asked
for, in place:

- ``"torch"``: PyTorch's own product (``F.linear``);
- ``"numpy"``: NumPy's BLAS, for the layers of at least :data:`NUMPY_MIN_WEIGHTS` weights (the
  others keep PyTorch's product);
- ``"onednn"``: oneDNN with packed weights, for the layers of at least
  :data:`ONEDNN_MIN_WEIGHTS` weights;
- ``"auto"`` (the default, or the ``FORMERS_GEMM`` environment variable): ``"onednn"`` on an
  ``AuthenticAMD`` or ``GenuineIntel`` CPU where PyTorch dispatches to AVX-512 and has oneDNN
  (one-row products left to MKL on Intel, to NumPy's OpenBLAS on AMD where NumPy uses it:
  :func:`onednn_few_rows`, :mod:`formers.inference.onednn`); else, on an AMD CPU,
  ``"numpy"`` where NumPy uses OpenBLAS; ``"torch"`` on every other CPU. Only those CPUs were
  measured (a Zen 1, a Zen 2, a Zen 4 and a Zen 5 EPYC, a Xeon with AVX-512 and AMX; on the
  Zen 1 one, family 23 model 1, the three libraries ran about as fast from 4 rows up and
  oneDNN's whole decodes 0.94-1.05x OpenBLAS's: ``gemm_shapes_cpu_epyc_zen1.json``, README).

Deviations, each measured or required:

- The NumPy product runs only when PyTorch uses one thread. With more, OpenBLAS's thread pool and
  PyTorch's (OpenMP) spin against each other: 2 + 2 threads decoded 4-5x slower than MKL alone on
  the 2-core EPYC (a one-off measurement). :func:`use_gemm` therefore sets NumPy's OpenBLAS to
  one thread too (``threadpoolctl``), for the whole process (also where oneDNN's layers leave
  one-row products to it). oneDNN runs on PyTorch's own threads, at any count.
- With gradients enabled, a tensor off the CPU or of a subclass, mixed dtypes, or while
  ``torch.compile`` or an exporter traces the model, the layer runs ``F.linear``: NumPy is
  invisible to autograd and to graph capture. Training a converted model therefore works, at
  PyTorch's speed.
- The libraries sum in different orders, so outputs agree to float rounding, not bit for bit.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from formers.inference.int8 import INT8_LINEARS, int8_product
from formers.inference.onednn import (
    FewRows,
    OneDnnLinear,
    Product,
    onednn_available,
    onednn_may_run,
    torch_rows,
)

BACKENDS = ("auto", "torch", "numpy", "onednn")
ENV = "FORMERS_GEMM"
# smaller weights stay with PyTorch: NumPy's call costs more and OpenBLAS's gain is gone there
NUMPY_MIN_WEIGHTS = 512 * 512
# smaller weights stay with PyTorch: oneDNN's call costs more there (benchmarks/gemm_shapes.py)
ONEDNN_MIN_WEIGHTS = 512 * 512
_NUMPY_DTYPES = (torch.float32, torch.float64)


class NumpyLinear(nn.Linear):
    """``nn.Linear`` whose product runs in NumPy's BLAS at inference on one CPU thread (see the
    module docstring for when it falls back to ``F.linear``). Made by :func:`use_gemm`, which
    swaps the class of existing ``nn.Linear`` modules; not built directly."""

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102 (nn.Linear's)
        if not numpy_may_run(x, self.weight):
            return F.linear(x, self.weight, self.bias)
        return _numpy_linear(x, *_numpy_views(self))


_VIEWS = "_formers_numpy_views"  # a layer's attribute: (storage key, weight_t, bias) views


def _numpy_views(linear: nn.Linear) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`_numpy_operands` of ``linear``, kept on the layer and made again when the weight's
    or the bias's storage changes (``weight.data = ...``; a view holds its storage, so a new one
    cannot reuse the address); in-place changes show through the views."""
    key = (linear.weight.data_ptr(), 0 if linear.bias is None else linear.bias.data_ptr())
    known = linear.__dict__.get(_VIEWS)
    if known is None or known[0] != key:
        known = linear.__dict__[_VIEWS] = (key, *_numpy_operands(linear))
    return known[1], known[2]


def drop_numpy_views(model: nn.Module) -> None:
    """Forget the NumPy views kept on ``model``'s layers (:func:`_numpy_views`): each holds its
    weight's storage alive, which a change of layout replaces (the next product makes new ones)."""
    for module in model.modules():
        module.__dict__.pop(_VIEWS, None)


def _numpy_operands(linear: nn.Linear) -> tuple[np.ndarray, np.ndarray | None]:
    """NumPy views (no copies) of ``linear``'s weight transposed, ``(in, out)``, and its bias."""
    bias = None if linear.bias is None else linear.bias.detach().numpy()
    return linear.weight.detach().T.numpy(), bias


def _numpy_linear(x: Tensor, weight_t: np.ndarray, bias: np.ndarray | None) -> Tensor:
    """:func:`_numpy_product` of ``(..., in)`` rows: ``(..., out)``."""
    rows = x.detach().reshape(-1, weight_t.shape[0])  # (N, in)
    return _numpy_product(rows, weight_t, bias).view(*x.shape[:-1], weight_t.shape[1])


def _numpy_product(rows: Tensor, weight_t: np.ndarray, bias: np.ndarray | None) -> Tensor:
    """``rows @ weight_t + bias`` in NumPy: ``(N, in) -> (N, out)``, a new tensor."""
    if not rows.is_contiguous():
        rows = rows.contiguous()
    out = np.matmul(rows.numpy(), weight_t)  # (N, out)
    if bias is not None:
        np.add(out, bias, out=out)
    return torch.from_numpy(out)


def row_product(linear: nn.Module, like: Tensor) -> Callable[[Tensor], Tensor]:
    """``linear`` as a function of ``(N, in)`` rows like ``like`` (their dtype and device, in
    the grad mode and threads they will run in), for a caller that makes many calls in one
    setting, as a decoding step does: a :class:`NumpyLinear` that would run NumPy
    (:func:`numpy_may_run`) becomes NumPy's product without the per-call checks, and a
    :class:`~formers.inference.onednn.OneDnnLinear` that would run oneDNN its packed product,
    and a dynamic int8 layer (:mod:`formers.inference.int8`) the quantized op its forward calls
    (:func:`int8_product`); any other layer (``nn.Linear``, a subclass with its own forward) is
    the module itself."""
    if type(linear) is NumpyLinear and numpy_may_run(like, linear.weight):
        weight_t, bias = _numpy_views(linear)
        return lambda rows: _numpy_product(rows, weight_t, bias)
    if type(linear) is OneDnnLinear and onednn_may_run(like, linear.weight):
        return linear.product(like)
    if type(linear) in INT8_LINEARS and like.dtype is torch.float32:
        return int8_product(linear)
    return linear


def numpy_may_run(x: Tensor, weight: Tensor) -> bool:
    """Whether :class:`NumpyLinear` would multiply ``x`` by ``weight`` in NumPy now (the module
    docstring's conditions: no gradients, CPU, one dtype, one PyTorch thread, no tracing)."""
    return (
        not torch.is_grad_enabled()
        and type(x) is Tensor  # not a subclass: fake, functional or distributed tensors
        and x.dtype is weight.dtype
        and x.dtype in _NUMPY_DTYPES
        and x.is_cpu
        and weight.is_cpu
        and torch.get_num_threads() == 1
        and not torch.compiler.is_compiling()
        and not torch.compiler.is_exporting()
        and not torch.jit.is_tracing()
    )


def cpu_vendor(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """The CPU's vendor string (``GenuineIntel``, ``AuthenticAMD``) from ``cpuinfo``, or ``None``
    where that file is missing or says nothing (other systems, other architectures)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("vendor_id"):
            return line.split(":", 1)[1].strip() or None
    return None


def _numpy_blas() -> list:
    """threadpoolctl's controllers of the BLAS libraries NumPy loaded (their path is under the
    NumPy install), e.g. ``numpy.libs/libscipy_openblas64_*.so`` for a PyPI wheel."""
    from threadpoolctl import ThreadpoolController

    roots = (str(Path(np.__file__).parent), str(Path(np.__file__).parent) + ".libs")
    controller = ThreadpoolController().select(user_api="blas")
    return [lib for lib in controller.lib_controllers if lib.filepath.startswith(roots)]


@cache
def numpy_blas_name() -> str | None:
    """The BLAS NumPy multiplies with (``openblas``, ``mkl``, ...), or ``None`` if unknown."""
    libs = _numpy_blas()
    return libs[0].internal_api if libs else None


def cpu_capability() -> str:
    """The instruction set PyTorch's CPU kernels dispatch to (``"AVX512"``, ``"AVX2"``, ...)."""
    return torch.backends.cpu.get_cpu_capability()


def numpy_rows(layer: nn.Linear, like: Tensor) -> Product | None:
    """:data:`~formers.inference.onednn.FewRows` of NumPy's product, where it may run for rows
    like ``like`` (:func:`numpy_may_run`), else ``None`` (oneDNN's): ``(N, in) -> (N, out)``
    through views of the weight's transpose and of the bias (:func:`_numpy_views`, kept on the
    layer: the layer's forward asks at every call)."""
    if not numpy_may_run(like, layer.weight):
        return None
    weight_t, bias = _numpy_views(layer)
    return lambda rows: _numpy_product(rows, weight_t, bias)


def onednn_few_rows() -> tuple[int, FewRows]:
    """``(min_rows, few_rows)`` of a :class:`~formers.inference.onednn.OneDnnLinear`: one-row
    products in MKL on an Intel CPU (:func:`~formers.inference.onednn.torch_rows`), in NumPy's
    OpenBLAS on an AMD CPU where NumPy uses it (:func:`numpy_rows`), faster there (module
    docstring); else oneDNN at every row count."""
    vendor = cpu_vendor()
    if vendor == "GenuineIntel":
        return 2, torch_rows
    if vendor == "AuthenticAMD" and numpy_blas_name() == "openblas":
        return 2, numpy_rows
    return 1, torch_rows


def auto_backend() -> str:
    """``"onednn"`` on an AMD or Intel CPU with AVX-512 (and oneDNN); on an AMD CPU without,
    ``"numpy"`` where NumPy uses OpenBLAS; ``"torch"`` elsewhere (module docstring)."""
    vendor = cpu_vendor()
    avx512 = cpu_capability() == "AVX512" and onednn_available()
    if vendor in ("AuthenticAMD", "GenuineIntel") and avx512:
        return "onednn"
    if vendor == "AuthenticAMD" and numpy_blas_name() == "openblas":
        return "numpy"
    return "torch"


def resolve_backend(backend: str | None = None) -> str:
    """``backend``, else ``$FORMERS_GEMM``, else ``"auto"``, with ``"auto"`` resolved.

    Raises:
        ValueError: not one of :data:`BACKENDS` (names where the value came from).
    """
    source = "backend" if backend is not None else ENV
    name = backend if backend is not None else os.environ.get(ENV, "auto")
    if name not in BACKENDS:
        raise ValueError(f"{source}={name!r} is not a GEMM backend; choose one of {list(BACKENDS)}")
    return auto_backend() if name == "auto" else name


_LAYERS: dict[str, type[nn.Linear]] = {
    "torch": nn.Linear, "numpy": NumpyLinear, "onednn": OneDnnLinear,
}  # fmt: skip


def use_gemm(model: nn.Module, backend: str | None = None) -> nn.Module:
    """Give the CPU ``nn.Linear`` layers of ``model`` the product ``backend`` names (module
    docstring), in place; returns ``model``. Parameters, names and the state dict are unchanged.

    Raises:
        ValueError: an unknown backend, or ``"onednn"`` where PyTorch has no oneDNN.
    """
    name = resolve_backend(backend)
    if name == "onednn" and not onednn_available():
        raise ValueError("the onednn GEMM backend needs a PyTorch built with oneDNN (mkldnn)")
    target = _LAYERS[name]
    least, few = onednn_few_rows() if target is OneDnnLinear else (1, torch_rows)  # read once
    drop_numpy_views(model)  # of the weights as they were: the next product makes new ones
    swapped = False
    for module in model.modules():
        if type(module) not in _LAYERS.values():
            continue
        pays = target is not nn.Linear and _pays(module, name)
        module.__class__ = target if pays else nn.Linear
        swapped |= pays
        if pays and target is OneDnnLinear:
            module.min_rows, module.few_rows = least, few
            module.packed_weight()  # packed now, not in the first decoding step
    if swapped and (name == "numpy" or few is numpy_rows):
        _one_blas_thread()
    return model


def _pays(linear: nn.Linear, backend: str) -> bool:
    weight = linear.weight
    if backend == "numpy":
        return weight.is_cpu and weight.numel() >= NUMPY_MIN_WEIGHTS
    # oneDNN's float32 product only: the one measured, and packed at conversion
    return weight.is_cpu and weight.dtype is torch.float32 and weight.numel() >= ONEDNN_MIN_WEIGHTS


def gemm_backend(model: nn.Module) -> str:
    """``"numpy"``, ``"onednn"``, ``"torch"`` or ``"mixed"``: what ``model``'s linear layers
    multiply with."""
    backends = {cls: name for name, cls in _LAYERS.items()}
    names = {backends.get(type(m), "torch") for m in model.modules() if isinstance(m, nn.Linear)}
    return "mixed" if len(names) > 1 else (names.pop() if names else "torch")


def _one_blas_thread() -> None:
    """NumPy's BLAS on one thread: it only runs while PyTorch uses one (module docstring)."""
    for lib in _numpy_blas():
        lib.set_num_threads(1)
