"""Weight layouts for fast decoding on a CPU.

``nn.Linear`` computes ``x @ W.T`` with ``W`` stored ``(out, in)`` row-major, so the matrix product
reads a transposed operand. For products with few rows (a decoding step: batch x beams rows), MKL
is markedly faster when the right operand is contiguous: on one core of the 2-core Xeon,
``(32, 512) x (512, 2048)`` takes 463 us against 675 us, and 4 to 16 rows gain 1.4-2.4x; one row
and many rows (training, the encoder) are unchanged (``benchmarks/README.md``).

:func:`use_inference_layout` therefore stores every ``nn.Linear`` weight column-major: the same
values, shape, names and parameters, only transposed in memory, so ``W.T`` is contiguous. Tied
weights (an embedding shared with the output projection) are converted once and stay tied. The
model computes the same function; outputs agree to float rounding (a different summation order
inside MKL), and the tests check greedy and beam outputs are identical.

It also picks the library that multiplies (:func:`formers.inference.gemm.use_gemm`): on AMD CPUs,
where MKL is slow, NumPy's OpenBLAS at one thread. OpenBLAS reads this layout's ``W.T`` as a
contiguous operand too (10-20% faster than the transposed one in a one-off measurement).

Saving works as before (safetensors writes contiguous copies), loading into such a model keeps its
layout, and :func:`use_standard_layout` converts back. Code that calls ``weight.view(...)`` on a
converted weight fails (it is not contiguous); nothing in formers does.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

from formers.inference.gemm import use_gemm


def _linear_weights(model: nn.Module) -> Iterator[nn.Parameter]:
    """Every distinct 2-D ``nn.Linear`` weight of ``model`` (tied parameters once)."""
    seen: set[int] = set()
    for module in model.modules():
        if isinstance(module, nn.Linear) and id(module.weight) not in seen:
            seen.add(id(module.weight))
            yield module.weight


def _store(weights: list[nn.Parameter], *, column_major: bool) -> None:
    """Give each weight, in place, the layout asked for (same values, shape and parameter)."""
    for weight in weights:
        # column-major: (out, in) with strides (1, out), so that weight.T is contiguous
        weight.data = weight.data.t().contiguous().t() if column_major else weight.data.contiguous()


def use_inference_layout(model: nn.Module, gemm: str | None = None) -> nn.Module:
    """Store ``model``'s ``nn.Linear`` weights column-major, in place, and give them the GEMM
    backend ``gemm`` (:func:`~formers.inference.gemm.use_gemm`; default ``$FORMERS_GEMM`` or
    ``"auto"``); returns ``model``.

    Worth it for decoding on a CPU (faster greedy and beam search: ``benchmarks/hf_decoding.py``).
    Weights on other devices (CUDA) are left as they are: the measurement is for CPUs only.
    Idempotent.
    """
    weights = [w for w in _linear_weights(model) if w.device.type == "cpu" and w.is_contiguous()]
    _store(weights, column_major=True)
    return use_gemm(model, gemm)


def use_standard_layout(model: nn.Module) -> nn.Module:
    """Undo :func:`use_inference_layout`: every ``nn.Linear`` weight contiguous again, multiplied
    by PyTorch."""
    _store([w for w in _linear_weights(model) if not w.is_contiguous()], column_major=False)
    return use_gemm(model, "torch")


@contextmanager
def standard_layout(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block, ``model``'s ``nn.Linear`` weights are contiguous; after it, as before.

    For code that needs contiguous tensors, such as safetensors' ``save_model`` and
    ``load_model`` with tied weights (checkpoints use it).
    """
    converted = [w for w in _linear_weights(model) if not w.is_contiguous()]
    _store(converted, column_major=False)
    try:
        yield model
    finally:
        _store(converted, column_major=True)


def uses_inference_layout(model: nn.Module) -> bool:
    """True when every ``nn.Linear`` weight of ``model`` is stored column-major."""
    weights = list(_linear_weights(model))
    return bool(weights) and all(w.stride() == (1, w.shape[0]) for w in weights)
