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

The quantized model is for inference on a CPU: it cannot be trained, saved as a checkpoint or
moved to CUDA. A tied output projection gets its own int8 copy (the embedding stays float32).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence

import torch
from torch import nn

from formers.inference.gemm import use_gemm

ENGINES = ("x86", "fbgemm", "onednn", "qnnpack")  # in order of preference


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


def quantize_int8(model: nn.Module) -> nn.Module:
    """An int8 copy of ``model`` for CPU inference (its ``nn.Linear`` layers quantized); the
    float model is left as it was.

    Raises:
        Int8Error: the model is not on a CPU, or no quantized engine is available.
    """
    devices = {p.device.type for p in model.parameters()}
    if devices - {"cpu"}:
        raise Int8Error(f"--int8 needs the model on a CPU, but it is on {sorted(devices)}")
    torch.backends.quantized.engine = quantized_engine()
    qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*torch.ao.quantization.*")
        warnings.filterwarnings("ignore", message=".*quantized tensor creation.*deprecated.*")
        # a copy whose NumPy or oneDNN layers are plain nn.Linear again: quantize_dynamic
        # matches the layers' exact type and would leave those in float32
        float_copy = use_gemm(copy.deepcopy(model), "torch")
        quantized = torch.ao.quantization.quantize_dynamic(
            float_copy, {nn.Linear: qconfig}, dtype=torch.qint8, inplace=True
        )
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
    weights and one input width.

    The output equals the separate layers' bit for bit: the input is quantized from its own
    range either way, the weights are quantized per output row (the fused weight stacks the
    rows and their scales unchanged), and each output column is an exact int32 sum, then
    scaled and biased alone.
    """
    dynamic = torch.ao.nn.quantized.dynamic.Linear
    if len(linears) < 2 or any(type(m) is not dynamic for m in linears):
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
    fused = dynamic(weight.size(1), weight.size(0), bias_=bias is not None, dtype=torch.qint8)
    fused.set_weight_bias(weight, bias)
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
        if isinstance(module, torch.ao.nn.quantized.dynamic.Linear):
            weight, bias = module._weight_bias()
            total += weight.numel() + (bias.numel() if bias is not None else 0)
    return total
