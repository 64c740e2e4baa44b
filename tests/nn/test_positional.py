"""Position information: the paper's sinusoid against its formula (section 3.5), the rotary
embedding against RoPE's definition (arXiv 2104.09864) and its properties, learned positions.

Tolerances at large positions: our encodings compute the angle ``pos * w`` in float32, whose
rounding error is a few float32 epsilons *relative to the angle*, i.e. up to about
``pos * 2**-23`` in absolute terms (``w <= 1``); sin and cos pass that error on unchanged. So a
fixed bound such as 1e-6 holds only near 0; we allow ``1e-6 + pos * 2**-23`` (measured errors stay
below half of it, e.g. 2.5e-4 against 6e-4 at pos 5000 with d 512). Any actual mistake in the
formula (sin/cos swapped, 2i vs i in the exponent, halves instead of interleaving) is off by O(1).
"""

from __future__ import annotations

import math

import pytest
import torch

from formers.nn import LearnedPositionalEmbedding, RotaryEmbedding, SinusoidalPositionalEncoding
from formers.nn.positional import sinusoidal_table

EPS32 = 2.0**-23
POSITIONS = [0, 1, 7, 100, 1023, 5000]  # 5000 lies beyond the precomputed table of 1024


def _angle_tol(pos: int) -> float:
    return 1e-6 + pos * EPS32


def _paper_pe(pos: int, d: int) -> list[float]:
    """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d))."""
    row = []
    for j in range(d):
        i = j // 2
        angle = pos / 10000 ** (2 * i / d)
        row.append(math.sin(angle) if j % 2 == 0 else math.cos(angle))
    return row


@pytest.mark.parametrize("d", [16, 64, 512])
@pytest.mark.parametrize("pos", POSITIONS)
def test_sinusoid_matches_paper_formula(pos, d):
    pe = SinusoidalPositionalEncoding(d, max_len=1024)
    got = pe(1, offset=pos)[0].double()
    expected = torch.tensor(_paper_pe(pos, d), dtype=torch.float64)
    assert got.shape == (d,)
    assert (got - expected).abs().max() <= _angle_tol(pos)


def test_sinusoid_table_rows_match_formula():
    d = 32
    table = SinusoidalPositionalEncoding(d, max_len=64)(64)
    expected = torch.tensor([_paper_pe(p, d) for p in range(64)], dtype=torch.float64)
    assert table.shape == (64, d)
    assert (table.double() - expected).abs().max() <= _angle_tol(63)


def test_sinusoid_beyond_table_agrees_with_table():
    short = SinusoidalPositionalEncoding(16, max_len=10)
    long = SinusoidalPositionalEncoding(16, max_len=100)
    for length, offset in [(5, 8), (3, 10), (20, 0), (4, 50)]:  # crossing, beyond, both
        got = short(length, offset)
        assert got.shape == (length, 16)
        assert torch.allclose(got, long(length, offset), rtol=0.0, atol=1e-6)


def test_sinusoid_offset_equals_slicing():
    pe = SinusoidalPositionalEncoding(8, max_len=32)
    assert torch.equal(pe(4, offset=5), pe(20)[5:9])


def test_sinusoid_shift_is_a_rotation():
    """The paper's motivation: PE(pos + k) is a linear function of PE(pos). Each (sin, cos)
    pair at frequency w is rotated by the angle k w."""
    d, pos, k = 16, 11, 5
    w = torch.tensor([10000 ** (-2 * i / d) for i in range(d // 2)], dtype=torch.float64)
    pe = sinusoidal_table(torch.arange(64), d).double()
    sin_p, cos_p = pe[pos, 0::2], pe[pos, 1::2]
    sin_shift = sin_p * torch.cos(k * w) + cos_p * torch.sin(k * w)
    cos_shift = cos_p * torch.cos(k * w) - sin_p * torch.sin(k * w)
    assert torch.allclose(pe[pos + k, 0::2], sin_shift, atol=1e-5)
    assert torch.allclose(pe[pos + k, 1::2], cos_shift, atol=1e-5)


@pytest.mark.parametrize("max_len", [8, 64])  # 8: the rows beyond it are computed on the fly
def test_sinusoid_halves_hold_the_same_values_as_sines_then_cosines(max_len):
    """Marian's layout: the paper's sines in the first half, its cosines in the second."""
    d = 16
    interleaved = SinusoidalPositionalEncoding(d, max_len=max_len)(20, offset=3)
    halves = SinusoidalPositionalEncoding(d, max_len=max_len, interleave=False)(20, offset=3)
    assert torch.equal(halves, torch.cat([interleaved[:, 0::2], interleaved[:, 1::2]], dim=-1))


def test_sinusoid_needs_even_width():
    with pytest.raises(ValueError, match="even"):
        SinusoidalPositionalEncoding(7)


def _rope_reference(x: torch.Tensor, pos: int, base: float = 10000.0) -> torch.Tensor:
    """RoPE with the GPT-NeoX / LLaMA pairing (x_j, x_{j + dh/2}), by Python's math."""
    dh = x.size(-1)
    half = dh // 2
    out = torch.empty_like(x, dtype=torch.float64)
    for j in range(half):
        theta = pos * base ** (-2 * j / dh)
        c, s = math.cos(theta), math.sin(theta)
        out[..., j] = x[..., j] * c - x[..., j + half] * s
        out[..., j + half] = x[..., j + half] * c + x[..., j] * s
    return out


@pytest.mark.parametrize("pos", [0, 1, 7, 100, 3000])  # 3000 lies beyond max_len
def test_rotary_matches_definition(pos):
    rope = RotaryEmbedding(8, max_len=2048)
    x = torch.randn(2, 3, 1, 8)
    got = rope(x, offset=pos).double()
    tol = _angle_tol(pos) * x.abs().max().item() * 2
    assert (got - _rope_reference(x.double(), pos)).abs().max() <= tol


def test_rotary_preserves_norm():
    rope = RotaryEmbedding(16, max_len=64)
    x = torch.randn(2, 4, 10, 16)
    for offset in (0, 30, 100):
        y = rope(x, offset)
        assert y.shape == x.shape
        assert torch.allclose(y.norm(dim=-1), x.norm(dim=-1), rtol=1e-5, atol=1e-6)


def test_rotary_dot_product_depends_only_on_relative_position():
    rope = RotaryEmbedding(16, max_len=64)
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)
    scale = (q.norm() * k.norm()).item()

    def dot(m: int, n: int) -> float:
        return (rope(q, m) * rope(k, n)).sum().item()

    for delta in (0, 1, 5, -3):
        starts = [m for m in (5, 10, 40, 63, 100, 1000, 3000) if m - delta >= 0]
        first = dot(starts[0], starts[0] - delta)
        for m in starts[1:]:
            assert abs(dot(m, m - delta) - first) <= scale * _angle_tol(m), (delta, m)
    assert abs(dot(7, 7) - (q * k).sum().item()) <= scale * 1e-6  # same position: no rotation
    assert abs(dot(5, 0) - dot(0, 5)) > 1e-3  # but it does depend on the sign of m - n


def test_rotary_offset_equals_slicing():
    rope = RotaryEmbedding(8, max_len=64)
    x = torch.randn(2, 3, 12, 8)
    full = rope(x)
    assert torch.allclose(rope(x[:, :, 3:7], offset=3), full[:, :, 3:7], rtol=0.0, atol=1e-6)


def test_rotary_beyond_table_agrees_with_table():
    short = RotaryEmbedding(8, max_len=8)
    long = RotaryEmbedding(8, max_len=128)
    x = torch.randn(1, 2, 10, 8)
    for offset in (0, 5, 20):  # longer than the table; crossing its end; entirely beyond it
        assert torch.allclose(short(x, offset), long(x, offset), rtol=0.0, atol=1e-6)


def test_rotary_needs_even_head_dim():
    with pytest.raises(ValueError, match="even"):
        RotaryEmbedding(7)


def test_learned_positions():
    learned = LearnedPositionalEmbedding(8, max_len=10)
    assert torch.equal(learned(4, offset=6), learned.embedding.weight[6:10])
    with pytest.raises(ValueError, match=r"position 10 .*10 learned positions"):
        learned(5, offset=6)
    with pytest.raises(ValueError, match="beyond"):
        learned(11)
