"""oneDNN's packed float32 products for a decoding model's linear layers.

PyTorch ships oneDNN for its own fused CPU kernels (Inductor's freezing packs ``nn.Linear``
weights with it). On an AMD CPU with AVX-512, oneDNN multiplies with its AVX-512 code, while
PyTorch's MKL and NumPy's OpenBLAS (0.3.31, which calls such a CPU "Haswell") run AVX2 code. On
one core of a 2-core AMD EPYC of family 26 (Zen 5), a layer read from memory as a decoding step
reads it, packed once: ``(32, 512) x (512, 2048)`` 0.48 ms against OpenBLAS's 0.86 and MKL's
0.99; 4 rows 0.17 against 0.34 and 0.45; one row 0.16 against 0.16 and 0.19
(``benchmarks/gemm_shapes.py``, ``benchmarks/results/gemm_shapes_cpu_epyc_zen5.json``). On the
2-core EPYC of the previous generation we measured (Zen 2, AVX2 only) it lost to OpenBLAS at one
and at 128 rows (``benchmarks/decode_attempts.py``'s ``onednn-packed`` attempt, 0.55-0.98x), so
:func:`formers.inference.gemm.auto_backend` picks it only where PyTorch dispatches to AVX-512.

:class:`OneDnnLinear` is an ``nn.Linear`` (same parameters, names and state dict) that, where
nothing can need its gradient, multiplies by a copy of its weight in oneDNN's packed format
(``torch.ops.mkldnn._reorder_linear_weight`` / ``_linear_pointwise``, the operators Inductor's
freezing calls). Deviations, each required or measured:

- The packed copy is a second copy of the weight (a base-sized model's linear layers: about 180
  MB more, and 18 MB for the flat step's fused query, key and value weights). It is made by
  :func:`formers.inference.gemm.use_gemm` and again when the weight is replaced (``weight.data =
  ...``), loaded (``load_state_dict``), or changed in place through the parameter (``with
  torch.no_grad(): weight.copy_(...)``: its version counter). An in-place change through
  ``weight.data``, or to a weight made in inference mode (which has no version counter), other
  than by loading, is not seen.
- Copies are held outside the module (an opaque oneDNN tensor cannot be deep-copied), so
  ``copy.deepcopy`` of a model works and the copy packs its own on first use.
- The packed layout is chosen for 128 rows (``PACK_ROWS``): packing for 32 or 128 rows gave
  the same speed at 1-128 rows, packing for one row was 1.1-1.9x slower from 4 rows up (a
  one-off measurement of three shapes, weights read from memory).
- With gradients enabled, another dtype than float32, a tensor off the CPU or of a subclass, or
  while ``torch.compile`` or an exporter traces the model, the layer runs ``F.linear``.
- Products of fewer than ``min_rows`` rows run ``few_rows``'s product where it gives one, both
  set by :func:`formers.inference.gemm.use_gemm` (``onednn_few_rows()``). On an Intel CPU one
  row stays with PyTorch's MKL (:func:`torch_rows`): on a 2-core Xeon with AVX-512 and AMX,
  oneDNN's one-row products of layers of 512 x 512 weights or more ran at 0.56-0.82x MKL's, its
  4-row ones at 1.35-1.86x (``benchmarks/results/gemm_shapes_cpu_xeon.json``). On an AMD CPU
  one row multiplies in NumPy's OpenBLAS where NumPy may run (one thread), else in oneDNN: on a
  2-core EPYC of Zen 4, layers of 512 x 512 weights or more at one row, oneDNN's products ran
  at 0.55-0.98x OpenBLAS's (median 0.64; ``gemm_shapes_cpu_epyc_zen4.json``), and at 0.89-1.06x
  (median 0.99) on the Zen 5 one. The choice is made at each call,
  from the rows, in the layer and in its flat form alike, so the flat step keeps the model's
  bits; a row alone then gets the other library's rounding, in a batch oneDNN's.
- oneDNN sums in another order than MKL: outputs agree to float rounding, not bit for bit. Its
  result for a row does not depend on the other rows of the batch, nor on the layers' output
  columns being split (three projections multiply to the same bits as one of their stacked
  weights), on the measured CPU; the tests check both where PyTorch dispatches to AVX-512, and
  only there are the flat step's projections fused (:func:`fusion_checked`).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

PACK_ROWS = 128  # the batch size oneDNN's packed layout is chosen for (module docstring)

# layer -> (what its weight was when packed, the packed copy); see the module docstring
_PACKED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
# a query layer -> (what its attention's three layers were when fused, the fused product)
_FUSED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def onednn_available() -> bool:
    """Whether this PyTorch has oneDNN and the packed linear operators."""
    return torch.backends.mkldnn.is_available() and hasattr(
        torch.ops.mkldnn, "_reorder_linear_weight"
    )


def onednn_may_run(x: Tensor, weight: Tensor) -> bool:
    """Whether :class:`OneDnnLinear` would multiply ``x`` by ``weight`` in oneDNN now (no
    gradients, float32 CPU tensors, not a subclass, no tracing)."""
    return (
        not torch.is_grad_enabled()
        and type(x) is Tensor  # not a subclass: fake, functional or distributed tensors
        and x.dtype is torch.float32
        and weight.dtype is torch.float32
        and x.is_cpu
        and weight.is_cpu
        and not torch.compiler.is_compiling()
        and not torch.compiler.is_exporting()
        and not torch.jit.is_tracing()
    )


Product = Callable[[Tensor], Tensor]
# (layer, rows like those it will multiply) -> its product of fewer than min_rows such rows,
# (N, in) -> (N, out), or None: oneDNN's for those too (module docstring). Two-dimensional rows,
# as a decoding step has them: no reshape around each call (on the AVX2 EPYC we measured, a
# reshaping wrapper took 16 us of a 52 us one-row product with the weight in cache).
FewRows = Callable[[nn.Linear, Tensor], Product | None]


def torch_rows(layer: nn.Linear, like: Tensor) -> Product:
    """:data:`FewRows` of PyTorch's product (MKL): ``F.linear`` with the layer's parameters."""
    return lambda x: F.linear(x, layer.weight, layer.bias)


class OneDnnLinear(nn.Linear):
    """``nn.Linear`` whose product runs in oneDNN with a packed copy of its weight at inference
    (module docstring). Made by :func:`formers.inference.gemm.use_gemm`, which swaps the class
    of existing ``nn.Linear`` modules; not built directly."""

    min_rows = 1  # products of fewer rows run few_rows's (set by use_gemm; module docstring)
    few_rows: FewRows = staticmethod(torch_rows)

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102 (nn.Linear's)
        if not onednn_may_run(x, self.weight):
            return F.linear(x, self.weight, self.bias)
        if self.min_rows > 1 and rows(x) < self.min_rows:
            few = self.few_rows(self, x)
            if few is not None:
                return few(x.reshape(-1, x.size(-1))).view(*x.shape[:-1], self.out_features)
        return packed_product(self.packed_weight(), self.bias)(x)

    def few_row_product(self, like: Tensor) -> Product | None:
        """The product of fewer than ``min_rows`` ``(N, in)`` rows like ``like``, or ``None``
        where oneDNN's multiplies every row count."""
        return self.few_rows(self, like) if self.min_rows > 1 else None

    def product(self, like: Tensor) -> Product:
        """The layer as a function of ``(N, in)`` rows like ``like``, for a caller that checked
        :func:`onednn_may_run` for them: the packed product, or :meth:`few_row_product`'s for
        fewer than ``min_rows`` rows (decided at each call, as :meth:`forward` does)."""
        packed = packed_product(self.packed_weight(), self.bias)
        few = self.few_row_product(like)
        if few is None:
            return packed
        least = self.min_rows
        return lambda x: packed(x) if x.size(0) >= least else few(x)

    def packed_weight(self) -> Tensor:
        """The weight in oneDNN's packed layout, packed again if the weight has changed."""
        weight = self.weight
        version = None if weight.is_inference() else weight._version  # none to read there
        key = (weight.data_ptr(), version, weight.shape, weight.stride())
        known = _PACKED.get(self)
        if known is None or known[0] != key:
            known = _PACKED[self] = (key, pack(weight))
        return known[1]

    def _load_from_state_dict(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        """Loading copies into the weight in place: pack again at the next product (whatever
        the grad mode; an inference tensor has no version counter to show the change)."""
        super()._load_from_state_dict(*args, **kwargs)
        _PACKED.pop(self, None)


def rows(x: Tensor) -> int:
    """The number of rows a product of ``x`` has: ``(..., in)`` -> the product of ``...``."""
    return x.numel() // max(x.size(-1), 1)


def pack(weight: Tensor) -> Tensor:
    """``(out, in)`` weight -> the same in oneDNN's packed layout for ``PACK_ROWS`` rows."""
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach(), PACK_ROWS)


def packed_product(packed: Tensor, bias: Tensor | None) -> Callable[[Tensor], Tensor]:
    """``x -> x @ W.T + bias`` for a packed ``W``: ``(..., in) -> (..., out)``, a new tensor."""
    bias = None if bias is None else bias.detach()
    return lambda x: torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")


def fusion_checked() -> bool:
    """Whether this CPU runs oneDNN's AVX-512 code, where its stacked product was checked to give
    the bits of separate products (module docstring); elsewhere the products stay separate."""
    return torch.backends.cpu.get_cpu_capability() == "AVX512"


def fuse_onednn(linears: Sequence[nn.Module], like: Tensor) -> Callable[[Tensor], Tensor] | None:
    """One oneDNN product for ``linears`` (a self-attention's query, key and value layers) on the
    same input, their outputs side by side: the weights stacked and packed, made again when a
    weight changes (as :meth:`OneDnnLinear.packed_weight` sees changes); the biases are read at
    every call. ``None`` unless every layer is a :class:`OneDnnLinear` that would run oneDNN on
    rows like ``like``, all or none have biases, all have the same rule for few rows, and
    unless PyTorch dispatches to AVX-512 here (:func:`fusion_checked`)."""
    if not fusion_checked():
        return None
    if not all(type(m) is OneDnnLinear and onednn_may_run(like, m.weight) for m in linears):
        return None
    biases = [m.bias for m in linears]
    if len({b is None for b in biases}) > 1 or len({(m.min_rows, m.few_rows) for m in linears}) > 1:
        return None
    few = [m.few_row_product(like) for m in linears]  # one rule, one like: all or none None
    weights = tuple(m.packed_weight() for m in linears)
    known = _FUSED.get(linears[0])
    if known is None or any(a is not b for a, b in zip(known[0], weights, strict=True)):
        stacked = torch.cat([m.weight.detach() for m in linears])  # (sum of outs, in)
        known = _FUSED[linears[0]] = (weights, pack(stacked))
    packed, least = known[1], linears[0].min_rows
    if biases[0] is None:
        fused = packed_product(packed, None)
    else:
        fused = lambda x: packed_product(packed, torch.cat(biases))(x)  # noqa: E731
    if few[0] is None:
        return fused
    # fewer rows: the layers' own products side by side (what their forward runs there), the
    # bits of the model's step
    return lambda x: fused(x) if x.size(0) >= least else torch.cat([f(x) for f in few], -1)
