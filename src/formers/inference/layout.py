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

The converted weights share one block of memory, each starting on a cache line, and on Linux
that block asks for transparent huge pages (``madvise(MADV_HUGEPAGE)``; where the kernel does
not grant them it is ordinary memory). A decoding step streams every weight from memory once
per token, and with 4 KiB pages the hardware prefetcher stops at every page boundary. On one
core of the 2-core EPYC, the 49 products of a base-sized decoder step at one row (weights out
of cache) took 6.3 ms with a separate allocation per weight, 6.0 ms in one block of ordinary
pages and 5.6 ms in one block of huge pages; whole greedy and beam-4 decodes with the flat
step ran 1.08-1.11x faster at one sentence than with separate allocations, and as fast at 32
sentences (0.98-1.03x; interleaved one-off runs). ``benchmarks/decode_attempts.py`` measures
the huge pages alone as ``ordinary-pages``; ``use_inference_layout(model, huge_pages=False)``
leaves them out.

Saving works as before (safetensors writes contiguous copies), loading into such a model keeps its
layout, and :func:`use_standard_layout` converts back. Code that calls ``weight.view(...)`` on a
converted weight fails (it is not contiguous); nothing in formers does.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import torch
from torch import Tensor, nn

from formers.inference.gemm import drop_numpy_views, use_gemm


def _linear_weights(model: nn.Module) -> Iterator[nn.Parameter]:
    """Every distinct 2-D ``nn.Linear`` weight of ``model`` (tied parameters once)."""
    seen: set[int] = set()
    for module in model.modules():
        if isinstance(module, nn.Linear) and id(module.weight) not in seen:
            seen.add(id(module.weight))
            yield module.weight


_LINE = 64  # bytes: every weight in a block starts on a cache line
_HUGE_PAGE = 2 << 20  # bytes: a transparent huge page on x86-64
# the model's attribute holding the huge_pages use_inference_layout was given, for
# standard_layout to restore (an attribute, so that a deep copy of the model keeps it)
_HUGE_PAGES = "_formers_huge_pages"


def _contiguous(weights: list[nn.Parameter]) -> None:
    """Store each weight row-major again, in place (same values, shape and parameter)."""
    for weight in weights:
        weight.data = weight.data.contiguous()


def _column_major(weights: list[nn.Parameter], huge_pages: bool = True) -> None:
    """Store each weight column-major, in place, in one block per dtype (:func:`_block`)."""
    for dtype in {w.dtype for w in weights}:
        group = [w for w in weights if w.dtype is dtype]
        places = _block([w.numel() for w in group], dtype, huge_pages)
        for weight, place in zip(group, places, strict=True):
            out_features, in_features = weight.shape
            transposed = place.view(in_features, out_features)  # W.T, contiguous
            transposed.copy_(weight.data.t())
            weight.data = transposed.t()  # (out, in) with strides (1, out)


def _block(numels: list[int], dtype: torch.dtype, huge_pages: bool) -> list[Tensor]:
    """Flat tensors of ``numels`` elements in one block of memory, each on a cache line."""
    size = dtype.itemsize
    starts, end = [], 0
    for numel in numels:
        starts.append(end)
        end += -(-numel * size // _LINE) * _LINE
    memory = _huge_page_memory(end) if huge_pages else torch.empty(end, dtype=torch.uint8)
    return [
        memory[start : start + numel * size].view(dtype)
        for start, numel in zip(starts, numels, strict=True)
    ]


def _huge_page_memory(nbytes: int) -> Tensor:
    """``nbytes`` of uint8 on a huge-page boundary, advised to the kernel as huge pages, where
    the platform has the advice (Linux); else ordinary memory."""
    advice = getattr(mmap, "MADV_HUGEPAGE", None)
    if advice is None or nbytes < _HUGE_PAGE:
        return torch.empty(nbytes, dtype=torch.uint8)
    # private anonymous memory (shared memory has its own huge-page setting, often off)
    memory = mmap.mmap(-1, nbytes + _HUGE_PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    with suppress(OSError):  # huge pages switched off: the advice is refused, memory still works
        memory.madvise(advice)
    block = torch.frombuffer(memory, dtype=torch.uint8)  # holds the mapping while it lives
    start = -block.data_ptr() % _HUGE_PAGE
    return block[start : start + nbytes]


def use_inference_layout(
    model: nn.Module, gemm: str | None = None, *, huge_pages: bool = True
) -> nn.Module:
    """Store ``model``'s ``nn.Linear`` weights column-major, in place, in one block of memory
    (with ``huge_pages``, advised as transparent huge pages where Linux has them), and give
    them the GEMM backend ``gemm`` (:func:`~formers.inference.gemm.use_gemm`; default
    ``$FORMERS_GEMM`` or ``"auto"``); returns ``model``.

    Worth it for decoding on a CPU (faster greedy and beam search: ``benchmarks/hf_decoding.py``).
    Weights on other devices (CUDA) are left as they are: the measurement is for CPUs only.
    Idempotent.
    """
    weights = [w for w in _linear_weights(model) if w.device.type == "cpu" and w.is_contiguous()]
    _column_major(weights, huge_pages)
    object.__setattr__(model, _HUGE_PAGES, huge_pages)  # not a submodule, buffer or parameter
    return use_gemm(model, gemm)


def use_standard_layout(model: nn.Module) -> nn.Module:
    """Undo :func:`use_inference_layout`: every ``nn.Linear`` weight contiguous again, multiplied
    by PyTorch."""
    _contiguous([w for w in _linear_weights(model) if not w.is_contiguous()])
    return use_gemm(model, "torch")


@contextmanager
def standard_layout(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block, ``model``'s ``nn.Linear`` weights are contiguous; after it, as before
    (in huge pages or not, as :func:`use_inference_layout` was told for ``model``).

    For code that needs contiguous tensors, such as safetensors' ``save_model`` and
    ``load_model`` with tied weights (checkpoints use it).
    """
    converted = [w for w in _linear_weights(model) if not w.is_contiguous()]
    _contiguous(converted)
    drop_numpy_views(model)  # else they keep the old block alive
    try:
        yield model
    finally:
        _column_major(converted, getattr(model, _HUGE_PAGES, True))
        drop_numpy_views(model)


def uses_inference_layout(model: nn.Module) -> bool:
    """True when every ``nn.Linear`` weight of ``model`` is stored column-major."""
    weights = list(_linear_weights(model))
    return bool(weights) and all(w.stride() == (1, w.shape[0]) for w in weights)
