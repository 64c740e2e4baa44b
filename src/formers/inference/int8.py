"""int8 inference: every ``nn.Linear`` of a model with int8 weights, through PyTorch's dynamic
quantization (``torch.ao.quantization.quantize_dynamic``, the fbgemm/x86 kernels).

Weights are quantized once, per output channel (a scale per row, which keeps the error of the
output projection's rare rows small); activations are quantized per call from their own range.
Embeddings, norms and the attention products stay float32.

Why this library and not torchao (which PyTorch now points to): on the 2-core AVX2 EPYC and Xeon
we measure, torchao 0.18's int8 configurations run eagerly on a CPU 10-20x slower than float32
(``Int8DynamicActivationInt8WeightConfig``: 412 ms against 22 ms for 12 products of 32 rows),
while ``quantize_dynamic`` is faster than float32 at the batch sizes of beam search
(``benchmarks/runtimes.py``). Its deprecation warning is silenced here; when torchao's CPU path
catches up, this one function changes.

On an Intel CPU with AVX-512, products of at least :data:`ONEDNN_ROWS` rows (beam search over
a batch) run under PyTorch's ``onednn`` quantized engine instead (:class:`Int8Linear`): per
layer of a base-sized model on the 2-core Xeon with AVX-512 and AMX we measure, oneDNN's int8
product is 1.1-1.8x faster than fbgemm's from 48-64 rows up (512 x 512 weights: only at 128
rows) and slower at 1-4 rows (0.5-0.7x), mixed at 32 (one-off timings of both engines on the same
weights, 24 MB of them per shape). The engine is fixed when weights are packed, so such a layer
packs its weights a second time for oneDNN, on its first product of that many rows: a model that
never decodes that many rows never holds the second copy. Both engines quantize the input from
its own range and sum exactly in int32; their outputs differ by float rounding of the scaling
(about 1e-7), so a row's bits depend on how many rows its batch has, as they already do on the
batch's range. Measured only there: other CPUs keep fbgemm alone. Packing reads PyTorch's global
quantized engine, so the packs are made with it set for the moment, under a lock, and restored
(:func:`quantize_int8` leaves the global as it found it).

The quantized model is for inference on a CPU: it cannot be trained, saved as a checkpoint or
moved to CUDA. A tied output projection gets its own int8 copy (the embedding stays float32).
"""

from __future__ import annotations

import copy
import threading
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Literal

import torch
from torch import Tensor, nn

ENGINES = ("x86", "fbgemm", "onednn", "qnnpack")  # in order of preference
ONEDNN_ROWS = 64  # on Intel CPUs with AVX-512: products of this many rows or more run in oneDNN
_DYNAMIC = torch.ao.nn.quantized.dynamic.Linear


class Int8Linear(_DYNAMIC):
    """PyTorch's dynamic int8 linear layer (``torch.ao.nn.quantized.dynamic.Linear``, same state
    dict) whose products of at least ``onednn_rows`` rows run on a second pack of its weights for
    the ``onednn`` quantized engine (module docstring); ``onednn_rows=None``: never. Made by
    :func:`quantize_int8`, which swaps the class of the layers it quantized."""

    onednn_rows: int | None = None

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102 (the dynamic Linear's)
        plain = type(x) is Tensor and x.dtype is torch.float32  # a subclass keeps its hooks
        if not plain or self._packed_params.dtype != torch.qint8:
            return super().forward(x)
        packed = packed_for(self, x.numel() // x.size(-1))
        return linear_dynamic(x, packed, reduce_range(self))


_LINEAR_DYNAMIC = torch.ops.quantized.linear_dynamic.default
# the C++ op without OpOverload.__call__'s search of the arguments for traced (fake) script
# objects, which an eager call never passes (the overload itself where PyTorch has no ``_op``)
_LINEAR_DYNAMIC_OP = getattr(_LINEAR_DYNAMIC, "_op", _LINEAR_DYNAMIC)


def linear_dynamic(rows: Tensor, packed: object, reduce: bool) -> Tensor:
    """``torch.ops.quantized.linear_dynamic(rows, packed, reduce)`` for a plain float32 tensor
    ``rows``, the same output bit for bit, without the lookup of ``__torch_function__`` on the
    packed weights. PyTorch looks for that attribute on every argument of an op that is not a
    plain tensor; on the packed weights (a TorchScript object) the failed lookup raises and
    catches a C++ exception with its message built, which took 3/4 of the call: 35 against 8-11
    us for a 64 x 64 layer at one row, 39 against 15-18 for 512 x 512 (one-off timings on the
    2-core Xeon). Subclass ``__torch_function__`` is off for the call alone (the packed weights
    and ``rows``, which must therefore be a plain tensor); torch function modes still apply."""
    with torch._C.DisableTorchFunctionSubclass():
        return _LINEAR_DYNAMIC_OP(rows, packed, reduce)


INT8_LINEARS = (_DYNAMIC, Int8Linear)
# layer -> (its fbgemm-packed weights when packed for oneDNN, the oneDNN-packed weights); held
# outside the layer so that deep copies work. Loading weights packs new fbgemm ones: repacked then.
_ONEDNN: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


_ENGINE_LOCK = threading.RLock()


@contextmanager
def _engine(name: str) -> Iterator[None]:
    """PyTorch's quantized engine (a global, which packing reads) set to ``name`` within the
    block and restored after; one thread at a time, so that packs made in other threads (a
    server's decodes) do not change it underneath."""
    with _ENGINE_LOCK:
        before = torch.backends.quantized.engine
        torch.backends.quantized.engine = name
        try:
            yield
        finally:
            torch.backends.quantized.engine = before


def onednn_packed(layer: nn.Module) -> object:
    """``layer``'s weights packed for the ``onednn`` quantized engine (made on first use and
    again after its weights change)."""
    current = layer._packed_params._packed_params
    known = _ONEDNN.get(layer)
    if known is None or known[0] is not current:
        weight, bias = layer._weight_bias()
        with _engine("onednn"):
            known = (current, torch.ops.quantized.linear_prepack(weight, bias))
            _ONEDNN[layer] = known
    return known[1]


def packed_for(layer: Int8Linear, rows: int) -> object:
    """The packed weights ``layer`` multiplies ``rows`` rows with: oneDNN's from its
    ``onednn_rows`` up, else its own (fbgemm's); the one row rule of its forward and of
    :func:`int8_product`."""
    least = layer.onednn_rows
    if least is not None and rows >= least:
        return onednn_packed(layer)
    return layer._packed_params._packed_params


def reduce_range(layer: nn.Module) -> bool:
    """The ``reduce_range`` argument the dynamic Linear's forward passes for ``layer``."""
    return not (layer.version is None or layer.version < 4)


def int8_product(linear: nn.Module) -> Callable[[Tensor], Tensor]:
    """A dynamic int8 layer as the op its forward calls (:func:`linear_dynamic`), with the same
    arguments, for plain float32 ``(N, in)`` rows: the same output bit for bit without the
    module call and the forward's checks around it (which took 9 of 37 us for a 512 x 512 layer
    at one row on the 2-core Xeon, a one-off timing). The packed weights are read at each call,
    so weights loaded later (``load_state_dict`` repacks them in place) are used."""
    params = linear._packed_params
    if params.dtype != torch.qint8:  # float16 weights: their own op
        return linear
    reduce = reduce_range(linear)
    if getattr(linear, "onednn_rows", None) is None:  # one pack: no rule to apply per call
        return lambda rows: linear_dynamic(rows, params._packed_params, reduce)
    return lambda rows: linear_dynamic(rows, packed_for(linear, rows.size(0)), reduce)


def engine_supported(name: str) -> bool:
    """Whether this PyTorch build offers the quantized engine ``name`` on this machine."""
    return name in torch.backends.quantized.supported_engines


def int8_onednn_rows() -> int | None:
    """:data:`ONEDNN_ROWS` on an Intel CPU where PyTorch dispatches to AVX-512 and offers the
    ``onednn`` quantized engine (where it was measured), else ``None``."""
    from formers.inference.gemm import cpu_capability, cpu_vendor

    supported = engine_supported("onednn")
    intel = cpu_vendor() == "GenuineIntel" and cpu_capability() == "AVX512"
    return ONEDNN_ROWS if supported and intel else None


class Int8Error(ValueError):
    """int8 inference is not possible here (the device, or no quantized engine)."""


def quantized_engine() -> str:
    """The quantized engine this build of PyTorch offers on this machine.

    Raises:
        Int8Error: none of :data:`ENGINES` is supported.
    """
    supported = torch.backends.quantized.supported_engines
    for engine in ENGINES:
        if engine in supported:
            return engine
    raise Int8Error(
        f"this PyTorch build has no int8 engine on this machine (supported: {supported}); "
        "run without --int8"
    )


def check_int8(device: torch.device | str) -> None:
    """Refuse ``--int8`` where it cannot run: dynamic quantization is for CPUs only (checked on
    the device's name, so that ``cuda`` is refused as such on a machine without one too)."""
    kind = device.type if isinstance(device, torch.device) else str(device).split(":")[0]
    if kind != "cpu":
        raise Int8Error(
            f"--int8 runs on a CPU only (PyTorch's dynamic quantization has no {kind} "
            "kernels); use --device cpu, or drop --int8 (bf16/fp16 is the GPU's fast path)"
        )
    quantized_engine()


def quantize_int8(
    model: nn.Module, onednn_rows: int | None | Literal["auto"] = "auto"
) -> nn.Module:
    """An int8 copy of ``model`` for CPU inference (its ``nn.Linear`` layers quantized, as
    :class:`Int8Linear`); the float model is left as it was. ``onednn_rows``: the fewest rows a
    product multiplies under the ``onednn`` engine (``None``: never; ``"auto"``:
    :func:`int8_onednn_rows`).

    Raises:
        Int8Error: the model is not on a CPU, no quantized engine is available, or oneDNN rows
            were asked for where PyTorch has no ``onednn`` engine.
    """
    from formers.inference.gemm import use_gemm

    devices = {p.device.type for p in model.parameters()}
    if devices - {"cpu"}:
        raise Int8Error(f"--int8 needs the model on a CPU, but it is on {sorted(devices)}")
    engine = quantized_engine()
    least = int8_onednn_rows() if onednn_rows == "auto" else onednn_rows
    if least is not None and not engine_supported("onednn"):
        raise Int8Error("onednn_rows needs PyTorch's onednn quantized engine, absent here")
    qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*torch.ao.quantization.*")
        warnings.filterwarnings("ignore", message=".*quantized tensor creation.*deprecated.*")
        # a copy whose NumPy or oneDNN layers are plain nn.Linear again: quantize_dynamic
        # matches the layers' exact type and would leave those in float32
        float_copy = use_gemm(copy.deepcopy(model), "torch")
        with _engine(engine):  # packed for it; PyTorch's global engine is left as it was
            quantized = torch.ao.quantization.quantize_dynamic(
                float_copy, {nn.Linear: qconfig}, dtype=torch.qint8, inplace=True
            )
    for module in quantized.modules():
        if type(module) is _DYNAMIC:
            module.__class__ = Int8Linear
            module.onednn_rows = least
    quantized.eval()
    if hasattr(model, "config"):
        quantized.config = model.config
    quantized.int8 = True
    return quantized


def fuse_int8(linears: Sequence[nn.Module]) -> nn.Module | None:
    """One dynamic int8 linear layer whose output is the concatenation of ``linears``' outputs
    (the query, key and value projections of an attention: one input quantization and one
    kernel call instead of three, 1.4-2.4x faster on the EPYC for 512-wide layers at 1-32 rows,
    one-off measurement), or ``None`` unless all are dynamic int8 layers with per-channel
    weights, one input width and one oneDNN row rule (:class:`Int8Linear`), which the fused
    layer keeps.

    The output equals the separate layers' bit for bit: the input is quantized from its own
    range either way, the weights are quantized per output row (the fused weight stacks the
    rows and their scales unchanged), and each output column is an exact int32 sum, then
    scaled and biased alone (under either engine, tested).
    """
    if len(linears) < 2 or any(type(m) not in INT8_LINEARS for m in linears):
        return None
    if len({getattr(m, "onednn_rows", None) for m in linears}) > 1:
        return None
    weights, biases = zip(*(m._weight_bias() for m in linears), strict=True)
    if len({w.size(1) for w in weights}) > 1 or any(
        w.qscheme() != torch.per_channel_affine or w.q_per_channel_axis() != 0 for w in weights
    ):
        return None
    weight = torch._make_per_channel_quantized_tensor(
        torch.cat([w.int_repr() for w in weights]),
        torch.cat([w.q_per_channel_scales() for w in weights]),
        torch.cat([w.q_per_channel_zero_points() for w in weights]),
        0,
    )  # (sum of outs, in)
    bias = None
    if any(b is not None for b in biases):
        pairs = zip(weights, biases, strict=True)
        bias = torch.cat([b if b is not None else torch.zeros(w.size(0)) for w, b in pairs])
    with _engine(quantized_engine()):  # as quantize_int8 packs
        fused = Int8Linear(weight.size(1), weight.size(0), bias_=bias is not None)
        fused.set_weight_bias(weight, bias)
    fused.onednn_rows = getattr(linears[0], "onednn_rows", None)
    return fused


def is_int8(model: nn.Module) -> bool:
    """Whether ``model`` came from :func:`quantize_int8`."""
    return bool(getattr(model, "int8", False))


def prepare_for_decoding(model: nn.Module, *, int8: bool = False) -> nn.Module:
    """The model to decode with: its int8 copy (:func:`quantize_int8`) or, in float32, the
    model itself with the CPU's faster weight layout (:func:`~formers.inference.layout.
    use_inference_layout`; same outputs)."""
    from formers.inference.layout import use_inference_layout

    return quantize_int8(model) if int8 else use_inference_layout(model)


def add_int8_option(parser: object) -> None:
    """The ``--int8`` flag of ``translate``, ``generate`` and ``serve``."""
    parser.add_argument(  # type: ignore[attr-defined]
        "--int8", action="store_true",
        help="int8 weights for the linear layers (PyTorch dynamic quantization; CPU only): "
        "faster on a CPU, a little less accurate (README: int8)",
    )  # fmt: skip


def decoding_device(device: str, *, int8: bool) -> torch.device:
    """The device a command decodes on: ``device`` resolved (``"auto"``: CUDA if available, but
    the CPU with ``int8``), checked for int8 when asked (before anything is loaded)."""
    from formers.device import resolve_device

    if int8:
        device = "cpu" if device == "auto" else device
        check_int8(device)
    return resolve_device(device)


def count_parameters(model: nn.Module) -> int:
    """Distinct parameters, an int8 model's packed linear weights and biases included."""
    total = sum(p.numel() for p in model.parameters())
    for module in model.modules():
        if isinstance(module, _DYNAMIC):
            weight, bias = module._weight_bias()
            total += weight.numel() + (bias.numel() if bias is not None else 0)
    return total
