"""The attention kernels: ``sdpa`` (PyTorch's fused kernel) against ``eager`` (the explicit
formula) under every mask, and ``eager`` against eq. 1 of the paper written from scratch."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tolerance import assert_close_to_scale

from formers.nn.kernels import KERNELS, eager_attention, get_kernel, sdpa_attention
from formers.nn.masks import causal_mask

FWD_TOL = 1e-5
GRAD_TOL = 1e-4


def _qkv(b, h, g, t_q, t_k, d=8, generator=None):
    q = torch.randn(b, h, t_q, d, generator=generator).requires_grad_()
    k = torch.randn(b, g, t_k, d, generator=generator).requires_grad_()
    v = torch.randn(b, g, t_k, d, generator=generator).requires_grad_()
    return q, k, v


def _run(kernel, q, k, v, **kwargs):
    """Output and gradients of an arbitrary scalar function of it (weights keep it non-trivial)."""
    out, _ = kernel(q, k, v, **kwargs)
    probe = torch.linspace(-1.0, 1.0, out.numel()).reshape(out.shape)
    grads = torch.autograd.grad((out * probe).sum(), (q, k, v))
    return out.detach(), grads


def _assert_kernels_agree(q, k, v, **kwargs):
    out_s, grads_s = _run(sdpa_attention, q, k, v, **kwargs)
    out_e, grads_e = _run(eager_attention, q, k, v, **kwargs)
    assert not out_s.isnan().any() and not out_e.isnan().any()
    assert (out_s - out_e).abs().max() <= FWD_TOL
    for name, gs, ge in zip("qkv", grads_s, grads_e, strict=True):
        assert not gs.isnan().any() and not ge.isnan().any(), name
        assert (gs - ge).abs().max() <= GRAD_TOL, name


def _key_padding(lengths, t_k):
    """(b, 1, 1, t_k), True at the first lengths[i] keys (right padding)."""
    return (torch.arange(t_k)[None, :] < torch.tensor(lengths)[:, None])[:, None, None, :]


def _rows_nonempty(mask):
    """Let every query attend at least to key 0, so that no row is fully masked by this mask."""
    mask = mask.clone()
    mask[..., 0] = True
    return mask


def _random_mask(*shape, keep=0.5):
    return lambda: _rows_nonempty(torch.rand(shape) < keep)


# (b, h, g, t_q, t_k, mask factory, causal)
CASES = {
    "none": (2, 4, 4, 5, 5, None, False),
    "key_padding": (2, 4, 4, 5, 5, lambda: _key_padding([5, 3], 5), False),
    "cross_key_padding": (2, 4, 4, 3, 7, lambda: _key_padding([7, 2], 7), False),
    "causal_square": (2, 4, 4, 6, 6, None, True),
    "causal_cache": (2, 4, 4, 2, 6, None, True),
    "causal_one_query": (2, 4, 4, 1, 6, None, True),
    "padding_and_causal": (2, 4, 4, 5, 5, lambda: _key_padding([5, 3], 5), True),
    "padding_and_causal_cache": (2, 4, 4, 3, 6, lambda: _key_padding([6, 4], 6), True),
    "per_head": (2, 4, 4, 4, 5, _random_mask(2, 4, 4, 5), False),
    "per_head_causal": (2, 4, 4, 4, 4, _random_mask(2, 4, 4, 4), True),
    "gqa": (2, 4, 2, 5, 5, None, False),
    "gqa_padding_causal": (2, 4, 2, 5, 5, lambda: _key_padding([5, 2], 5), True),
    "gqa_cache": (2, 4, 2, 2, 5, None, True),
    "mqa": (2, 4, 1, 5, 5, None, False),
    "mqa_per_head_causal": (2, 4, 1, 5, 5, _random_mask(2, 4, 5, 5, keep=0.7), True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_sdpa_equals_eager(case):
    b, h, g, t_q, t_k, make_mask, causal = CASES[case]
    mask = None if make_mask is None else make_mask()
    q, k, v = _qkv(b, h, g, t_q, t_k)
    _assert_kernels_agree(q, k, v, mask=mask, causal=causal)


@pytest.mark.parametrize("causal", [False, True])
def test_fully_masked_row_gives_zeros_not_nan(causal):
    q, k, v = _qkv(2, 2, 2, 4, 4)
    mask = torch.ones(2, 1, 4, 4, dtype=torch.bool)
    mask[0, 0, 2] = False  # query 2 of sequence 0 may attend to nothing
    for kernel in (sdpa_attention, eager_attention):
        out, (gq, gk, gv) = _run(kernel, q, k, v, mask=mask, causal=causal)
        assert not out.isnan().any()
        assert torch.equal(out[0, :, 2], torch.zeros_like(out[0, :, 2]))
        assert not (gq.isnan().any() or gk.isnan().any() or gv.isnan().any())
        assert torch.equal(gq[0, :, 2], torch.zeros_like(gq[0, :, 2]))
    _assert_kernels_agree(q, k, v, mask=mask, causal=causal)


def test_causal_with_more_keys_than_queries_is_bottom_right_aligned():
    """The last t_q queries of a causal pass over t_k positions = a causal pass of those queries
    over the same t_k keys (the KV-cache case). Top-left alignment would fail this."""
    t_k, t_q = 6, 2
    q, k, v = _qkv(1, 2, 2, t_k, t_k)
    for kernel in (sdpa_attention, eager_attention):
        full, _ = kernel(q, k, v, causal=True)
        tail, _ = kernel(q[:, :, -t_q:], k, v, causal=True)
        assert (full[:, :, -t_q:] - tail).abs().max() <= FWD_TOL


def test_eager_weights_are_a_distribution_over_allowed_keys():
    q, k, v = _qkv(2, 4, 2, 5, 6)
    mask = _key_padding([6, 4], 6) & (torch.rand(2, 4, 5, 6) > 0.4)
    mask[1, 0, 3] = False  # one fully masked row
    _, weights = eager_attention(q, k, v, mask=mask, causal=True, need_weights=True)
    allowed = mask & causal_mask(5, 6)
    assert weights.shape == (2, 4, 5, 6)
    assert torch.equal(weights[~allowed], torch.zeros_like(weights[~allowed]))
    assert (weights >= 0).all()
    sums = weights.sum(-1)
    has_key = allowed.any(-1)
    assert torch.allclose(sums[has_key], torch.ones_like(sums[has_key]), atol=1e-6)
    assert torch.equal(sums[~has_key], torch.zeros_like(sums[~has_key]))
    assert (~has_key).sum() >= 1  # the fully masked row above is really exercised


def test_eager_without_need_weights_returns_none():
    q, k, v = _qkv(1, 2, 2, 3, 3)
    assert eager_attention(q, k, v)[1] is None


def test_sdpa_refuses_to_return_weights():
    q, k, v = _qkv(1, 2, 2, 3, 3)
    with pytest.raises(ValueError, match="eager"):
        sdpa_attention(q, k, v, need_weights=True)


def test_get_kernel():
    assert get_kernel("sdpa") is sdpa_attention
    assert get_kernel("eager") is eager_attention
    with pytest.raises(ValueError) as info:
        get_kernel("nope")
    message = str(info.value)
    assert "nope" in message
    for name in KERNELS:
        assert name in message


def _paper_attention(q, k, v, mask=None, scale=None):
    """Eq. 1 of arXiv 1706.03762, head by head: softmax(q k^T / sqrt(d_k)) v."""
    b, h, t_q, d = q.shape
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    out = torch.empty(b, h, t_q, v.size(-1), dtype=q.dtype)
    for i in range(b):
        for j in range(h):
            scores = q[i, j] @ k[i, j].T * scale  # (t_q, t_k)
            if mask is not None:
                scores = scores.masked_fill(~mask[i, j], float("-inf"))
            out[i, j] = torch.softmax(scores, dim=-1) @ v[i, j]
    return out


@pytest.mark.parametrize("kernel", [eager_attention, sdpa_attention], ids=["eager", "sdpa"])
def test_kernels_match_equation_one(kernel):
    q, k, v = (t.detach() for t in _qkv(2, 3, 3, 4, 5, d=6))
    mask = _rows_nonempty(torch.rand(2, 3, 4, 5) > 0.5)
    assert (kernel(q, k, v)[0] - _paper_attention(q, k, v)).abs().max() <= FWD_TOL
    got = kernel(q, k, v, mask=mask)[0]
    assert (got - _paper_attention(q, k, v, mask)).abs().max() <= FWD_TOL
    got = kernel(q, k, v, mask=mask, scale=0.3)[0]
    assert (got - _paper_attention(q, k, v, mask, scale=0.3)).abs().max() <= FWD_TOL


def test_eager_hand_computed_example():
    """Zero queries give uniform weights, so the output is the mean of the allowed values."""
    q = torch.zeros(1, 1, 2, 4)
    k = torch.randn(1, 1, 3, 4)
    v = torch.tensor([[[[1.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0], [0.0, 0.0, 3.0, 6.0]]]])
    mask = torch.tensor([[True, True, True], [True, False, True]])[None, None]
    out, weights = eager_attention(q, k, v, mask=mask, need_weights=True)
    expected = torch.tensor([[1 / 3, 2 / 3, 1.0, 2.0], [0.5, 0.0, 1.5, 3.0]])
    assert torch.allclose(out[0, 0], expected, atol=1e-6)
    assert torch.allclose(weights[0, 0], torch.tensor([[1 / 3] * 3, [0.5, 0.0, 0.5]]), atol=1e-6)


def test_eager_gqa_equals_repeated_heads():
    """GQA with g key/value heads = MHA with each key/value head repeated h/g times."""
    q, k, v = (t.detach() for t in _qkv(2, 4, 2, 3, 5))
    grouped, _ = eager_attention(q, k, v)
    k_rep = k.repeat_interleave(2, dim=1)  # heads 0,1 share kv head 0; heads 2,3 kv head 1
    v_rep = v.repeat_interleave(2, dim=1)
    assert (grouped - _paper_attention(q, k_rep, v_rep)).abs().max() <= FWD_TOL


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    b=st.integers(1, 2),
    g=st.integers(1, 2),
    groups=st.sampled_from([1, 2, 3]),
    t_q=st.integers(1, 5),
    t_k=st.integers(1, 6),
    mask_kind=st.sampled_from(["none", "key", "per_head", "shared"]),
    causal=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_sdpa_equals_eager_random(b, g, groups, t_q, t_k, mask_kind, causal, seed):
    h = g * groups
    gen = torch.Generator().manual_seed(seed)
    q, k, v = _qkv(b, h, g, t_q, t_k, generator=gen)
    shape = {
        "none": None,
        "key": (b, 1, 1, t_k),
        "per_head": (b, h, t_q, t_k),
        "shared": (t_q, t_k),
    }[mask_kind]
    mask = None if shape is None else torch.rand(shape, generator=gen) > 0.3
    # Fully masked rows (from the random mask or from causal with t_q > t_k) are allowed here:
    # both kernels must give zeros for them.
    _assert_kernels_agree(q, k, v, mask=mask, causal=causal)


def test_a_causal_decoding_step_needs_no_mask(monkeypatch):
    """One query is the last position: it sees every key, so SDPA gets no mask (an all-True one
    would keep it off its fastest kernels) and the output is the unmasked one."""
    seen = []
    sdpa = F.scaled_dot_product_attention

    def spy(*args, **kwargs):
        seen.append(kwargs.get("attn_mask"))
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    q, k, v = torch.randn(2, 4, 1, 8), torch.randn(2, 2, 7, 8), torch.randn(2, 2, 7, 8)
    out, _ = sdpa_attention(q, k, v, causal=True)
    assert seen == [None]
    assert torch.equal(out, sdpa_attention(q, k, v)[0])
    eager, _ = eager_attention(q, k, v, causal=True)
    assert_close_to_scale(eager.double(), out.double(), rel=1e-5)


def test_the_eager_softmax_runs_in_float32(monkeypatch):
    """bf16 scores get a float32 softmax (then the probabilities are cast back), as in Hugging
    Face's eager attention. On this CPU torch's bf16 softmax accumulates in float32 anyway, so the
    values cannot tell; the call does: the kernel asks for float32."""
    asked = []
    softmax = torch.softmax

    def spy(x, dim, dtype=None):
        asked.append((x.dtype, dtype))
        return softmax(x, dim, dtype=dtype)

    monkeypatch.setattr(torch, "softmax", spy)
    q, k, v = (torch.randn(1, 2, 6, 16).to(torch.bfloat16) for _ in range(3))
    out, weights = eager_attention(q, k, v, need_weights=True)
    assert asked == [(torch.bfloat16, torch.float32)]
    assert weights.dtype == out.dtype == torch.bfloat16
    scores = torch.matmul(q, k.transpose(-2, -1)) * 16**-0.5
    assert torch.equal(weights, softmax(scores, -1, dtype=torch.float32).to(torch.bfloat16))
