"""The scale-relative tolerance of ``tests/tolerance.py``: it accepts the rounding noise of two
float32 (or float64) computations of the same values at any scale, and still rejects an error of
1e-3 of the scale, far smaller than what a real bug in a cache, a mask or a conversion causes."""

from __future__ import annotations

import pytest
import torch
from tolerance import FP32, FP64, assert_close_to_scale, scale_tol


def _logits_two_ways(scale: float, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Logit-like values of about ``scale``, as one matmul and as a sum over four chunks of the
    inner dimension: the same values, summed in another order (as another BLAS would)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 256, generator=g, dtype=dtype)
    w = torch.randn(256, 50, generator=g, dtype=dtype) * scale / 16  # sum of 256: std ~ scale
    chunked = sum(x[:, i : i + 64] @ w[i : i + 64] for i in range(0, 256, 64))
    return chunked, x @ w


@pytest.mark.parametrize("scale", [1e-2, 1.0, 6.0, 1e3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_accepts_rounding_noise_at_any_scale(scale, dtype):
    actual, expected = _logits_two_ways(scale, dtype)
    assert not torch.equal(actual, expected)  # the orders really round differently
    assert_close_to_scale(actual, expected)


@pytest.mark.parametrize("scale", [1e-2, 1.0, 6.0, 1e3])
def test_accepts_the_fp32_noise_measured_in_this_suite(scale):
    # 2.5e-6 of the scale: about the largest difference between two fp32 computations measured
    # in this suite (over several CPU kernels, BLAS code paths and thread counts)
    expected = torch.randn(3, 12, 50) * scale
    noise = 2.5e-6 * expected.abs().max() * torch.randn_like(expected).sign()
    assert_close_to_scale(expected + noise, expected)


@pytest.mark.parametrize("scale", [1e-2, 1.0, 6.0, 1e3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rejects_an_error_of_1e_3_of_the_scale(scale, dtype):
    actual, expected = _logits_two_ways(scale, dtype)
    actual[2, 7] += 1e-3 * expected.abs().max()  # one wrong element is enough
    with pytest.raises(AssertionError, match="allowed"):
        assert_close_to_scale(actual, expected)


def test_float64_is_held_to_the_tight_bound():
    expected = torch.randn(4, 10, dtype=torch.float64)
    actual = expected + 1e-8 * expected.abs().max()  # noise in float32, a bug in float64
    assert_close_to_scale(actual, expected, rel=FP32)
    with pytest.raises(AssertionError):
        assert_close_to_scale(actual, expected)  # float64: FP64


def test_an_absolute_bound_is_what_fails_at_large_scale():
    """Why the tolerance scales: the same relative noise breaks a fixed atol of 1e-5."""
    expected = torch.randn(3, 12, 50) * 6.0
    actual = expected * (1 + 2.5e-6)
    assert_close_to_scale(actual, expected)
    with pytest.raises(AssertionError):
        torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)


def test_scale_tol():
    t = torch.tensor([-4.0, 1.0, 2.0])
    assert scale_tol(t) == pytest.approx(4 * FP32)
    assert scale_tol(t.double()) == pytest.approx(4 * FP64)
    assert scale_tol(t, rel=0.5) == 2.0
    assert scale_tol(torch.empty(0)) == 0.0
    with pytest.raises(ValueError, match="pass rel"):
        scale_tol(t.half())
