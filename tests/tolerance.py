"""Tolerances for one computation done two ways, scaled to the values compared.

Why: float32 results are not the same bit for bit on every machine. The BLAS build (MKL,
OpenBLAS), the CPU's vector kernels (``ATEN_CPU_CAPABILITY``: AVX-512, AVX2 or scalar) and the
thread count change the order in which sums accumulate, and so their rounding. Two ways of
computing the same values (with and without the KV cache, SDPA and the explicit formula, ours and
Hugging Face's) then differ by a few float32 epsilons *of the values' magnitude*: what is 1e-6
for values near 1 is over 1e-5 for logits of 6, and an absolute bound of 1e-5 fails on another
CPU (issue 13). An elementwise ``rtol`` does not fix it: an element near 0 carries the rounding of
the large terms summed into it.

So the bound is absolute but proportional to the scale: ``|actual - expected| <= rel * scale``
elementwise, with ``scale = max |expected|``.

- float32: ``FP32 = 1e-5``, about 84 float32 epsilons (2**-23 = 1.2e-7). The largest difference
  measured in this suite, over the default kernels, ``ATEN_CPU_CAPABILITY=default``, MKL's
  SSE4.2 and AVX code paths and one or two threads, is about 2.5e-6 of the scale (a GPT's
  logits with and without the KV cache; a BERT classifier's probabilities, batched and alone):
  4x headroom. A real bug in a cache, a mask or a weight mapping is off by 1e-2 of the scale or
  more; an error of 1e-3 of the scale is still 100x the bound.
- float64, for the comparisons whose point is exactness (cache parity, kernel equivalence,
  causality): ``FP64 = 1e-10``. Rounding is then about 1e-15 of the scale on any machine, and the
  bound is still 10^7 times below a real bug.

``assert_close_to_scale`` picks the constant from the dtype of ``expected``.
"""

from __future__ import annotations

import torch

FP32 = 1e-5
FP64 = 1e-10
_REL = {torch.float32: FP32, torch.float64: FP64}


def scale_tol(expected: torch.Tensor, rel: float | None = None) -> float:
    """The absolute tolerance ``rel * max |expected|`` (``rel``: FP32 or FP64 by dtype)."""
    if rel is None:
        if expected.dtype not in _REL:
            raise ValueError(f"no default tolerance for {expected.dtype}; pass rel")
        rel = _REL[expected.dtype]
    if expected.numel() == 0:
        return 0.0
    return rel * float(expected.detach().abs().max())


def assert_close_to_scale(
    actual: torch.Tensor, expected: torch.Tensor, *, rel: float | None = None, msg: str = ""
) -> None:
    """``torch.testing.assert_close`` with ``atol = scale_tol(expected, rel)`` and ``rtol = 0``."""
    atol = scale_tol(expected, rel)
    note = f"(allowed: {atol:.3g}, i.e. rel x max |expected|)"
    torch.testing.assert_close(
        actual, expected, atol=atol, rtol=0, msg=lambda m: "\n".join(filter(None, [msg, m, note]))
    )
