"""Parity of :class:`formers.nn.MultiHeadAttention` with ``torch.nn.MultiheadAttention``.

The reference keeps the query, key and value projections stacked in one ``in_proj_weight``
(``[W_q; W_k; W_v]``, and ``in_proj_bias`` likewise) when keys and values have the model width,
and in separate ``{q,k,v}_proj_weight`` otherwise. Its masks are the opposite of ours: True means
*ignore* (``key_padding_mask``, boolean ``attn_mask``), whereas ours means *may attend*.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from formers.nn import AttentionRecorder, MultiHeadAttention
from formers.nn.masks import causal_mask

D, H = 16, 4
FWD_TOL = 1e-5
GRAD_TOL = 1e-4
KERNELS = ["sdpa", "eager"]


def _pair(kernel: str, kv_dim: int | None = None):
    """Our attention and the reference, with the reference's (random) weights copied to ours."""
    ref = nn.MultiheadAttention(D, H, batch_first=True, kdim=kv_dim, vdim=kv_dim)
    ours = MultiHeadAttention(D, H, kernel=kernel, kv_dim=kv_dim)
    with torch.no_grad():
        for p in ref.parameters():  # biases start at zero; make them matter
            p.normal_(0.0, 0.3)
        if kv_dim is None:
            w_q, w_k, w_v = ref.in_proj_weight.chunk(3)
        else:
            w_q, w_k, w_v = ref.q_proj_weight, ref.k_proj_weight, ref.v_proj_weight
        b_q, b_k, b_v = ref.in_proj_bias.chunk(3)
        ours.q_proj.weight.copy_(w_q)
        ours.k_proj.weight.copy_(w_k)
        ours.v_proj.weight.copy_(w_v)
        ours.q_proj.bias.copy_(b_q)
        ours.k_proj.bias.copy_(b_k)
        ours.v_proj.bias.copy_(b_v)
        ours.out_proj.weight.copy_(ref.out_proj.weight)
        ours.out_proj.bias.copy_(ref.out_proj.bias)
    return ours, ref


def _ref_grads(ref: nn.MultiheadAttention) -> dict[str, torch.Tensor]:
    """The reference's parameter gradients, under our parameter names."""
    if ref._qkv_same_embed_dim:
        g_q, g_k, g_v = ref.in_proj_weight.grad.chunk(3)
    else:
        g_q, g_k, g_v = ref.q_proj_weight.grad, ref.k_proj_weight.grad, ref.v_proj_weight.grad
    gb_q, gb_k, gb_v = ref.in_proj_bias.grad.chunk(3)
    return {
        "q_proj.weight": g_q,
        "k_proj.weight": g_k,
        "v_proj.weight": g_v,
        "q_proj.bias": gb_q,
        "k_proj.bias": gb_k,
        "v_proj.bias": gb_v,
        "out_proj.weight": ref.out_proj.weight.grad,
        "out_proj.bias": ref.out_proj.bias.grad,
    }


def _check(ours, ref, x, memory, our_kwargs, ref_kwargs):
    """Compare outputs, input gradients and every parameter gradient."""
    x_ours = x.clone().requires_grad_()
    x_ref = x.clone().requires_grad_()
    mem_ours = None if memory is None else memory.clone().requires_grad_()
    mem_ref = None if memory is None else memory.clone().requires_grad_()
    kv_ref = x_ref if memory is None else mem_ref

    out = ours(x_ours, mem_ours, **our_kwargs)
    expected, _ = ref(x_ref, kv_ref, kv_ref, need_weights=False, **ref_kwargs)
    assert out.shape == expected.shape
    assert (out - expected).abs().max() <= FWD_TOL

    probe = torch.randn(out.shape)  # a generic upstream gradient
    (out * probe).sum().backward()
    (expected * probe).sum().backward()
    assert (x_ours.grad - x_ref.grad).abs().max() <= GRAD_TOL
    if memory is not None:
        assert (mem_ours.grad - mem_ref.grad).abs().max() <= GRAD_TOL
    ref_grads = _ref_grads(ref)
    for name, p in ours.named_parameters():
        assert (p.grad - ref_grads[name]).abs().max() <= GRAD_TOL, name


def _lengths_masks(lengths, s):
    """Ours (b, 1, 1, s) True = attend; the reference's (b, s) True = ignore."""
    keep = torch.arange(s)[None, :] < torch.tensor(lengths)[:, None]
    return keep[:, None, None, :], ~keep


@pytest.mark.parametrize("kernel", KERNELS)
def test_self_attention(kernel):
    ours, ref = _pair(kernel)
    x = torch.randn(3, 5, D)
    _check(ours, ref, x, None, {}, {})


@pytest.mark.parametrize("kernel", KERNELS)
def test_self_attention_key_padding(kernel):
    ours, ref = _pair(kernel)
    x = torch.randn(3, 6, D)
    mask, ref_mask = _lengths_masks([6, 4, 1], 6)
    _check(ours, ref, x, None, {"mask": mask}, {"key_padding_mask": ref_mask})


@pytest.mark.parametrize("kernel", KERNELS)
def test_self_attention_causal(kernel):
    ours, ref = _pair(kernel)
    x = torch.randn(2, 6, D)
    ref_mask = ~causal_mask(6)  # the reference's boolean attn_mask: True = ignore
    assert torch.equal(ref_mask, nn.Transformer.generate_square_subsequent_mask(6).isinf())
    _check(ours, ref, x, None, {"causal": True}, {"attn_mask": ref_mask})


@pytest.mark.parametrize("kernel", KERNELS)
def test_self_attention_causal_as_explicit_mask(kernel):
    """Our mask argument (instead of causal=True) against the reference's is_causal path."""
    ours, ref = _pair(kernel)
    x = torch.randn(2, 5, D)
    ref_mask = nn.Transformer.generate_square_subsequent_mask(5)
    _check(ours, ref, x, None, {"mask": causal_mask(5)}, {"attn_mask": ref_mask, "is_causal": True})


@pytest.mark.parametrize("kernel", KERNELS)
def test_self_attention_key_padding_and_causal(kernel):
    ours, ref = _pair(kernel)
    x = torch.randn(3, 6, D)
    # right padding keeps key 0 for every query, so no row is fully masked (the reference gives
    # NaN for those; ours gives zeros)
    mask, ref_pad = _lengths_masks([6, 3, 1], 6)
    _check(
        ours,
        ref,
        x,
        None,
        {"mask": mask, "causal": True},
        {"key_padding_mask": ref_pad, "attn_mask": ~causal_mask(6)},
    )


@pytest.mark.parametrize("kernel", KERNELS)
def test_cross_attention(kernel):
    ours, ref = _pair(kernel)
    x, memory = torch.randn(2, 4, D), torch.randn(2, 7, D)
    _check(ours, ref, x, memory, {}, {})


@pytest.mark.parametrize("kernel", KERNELS)
def test_cross_attention_key_padding(kernel):
    ours, ref = _pair(kernel)
    x, memory = torch.randn(3, 4, D), torch.randn(3, 7, D)
    mask, ref_mask = _lengths_masks([7, 5, 2], 7)
    _check(ours, ref, x, memory, {"mask": mask}, {"key_padding_mask": ref_mask})


@pytest.mark.parametrize("kernel", KERNELS)
def test_cross_attention_with_other_memory_width(kernel):
    """kv_dim != d_model: the reference keeps separate q/k/v projection weights."""
    ours, ref = _pair(kernel, kv_dim=10)
    assert not ref._qkv_same_embed_dim
    x, memory = torch.randn(2, 4, D), torch.randn(2, 6, 10)
    mask, ref_mask = _lengths_masks([6, 3], 6)
    _check(ours, ref, x, memory, {"mask": mask}, {"key_padding_mask": ref_mask})


@pytest.mark.parametrize("cross", [False, True], ids=["self", "cross"])
@pytest.mark.parametrize("kernel", KERNELS)
def test_per_head_weights(kernel, cross):
    ours, ref = _pair(kernel)
    x = torch.randn(2, 5, D)
    memory = torch.randn(2, 7, D) if cross else None
    s = 7 if cross else 5
    mask, ref_mask = _lengths_masks([s, 3], s)
    kv = x if memory is None else memory
    with torch.no_grad():
        with AttentionRecorder(ours) as recorder:
            out = ours(x, memory, mask=mask)
        weights = recorder.last(ours)
        expected, expected_weights = ref(
            x, kv, kv, key_padding_mask=ref_mask, need_weights=True, average_attn_weights=False
        )
    assert weights.shape == (2, H, 5, s)
    assert (weights - expected_weights).abs().max() <= FWD_TOL
    assert (out - expected).abs().max() <= FWD_TOL


@pytest.mark.parametrize("kernel", KERNELS)
def test_causal_weights(kernel):
    ours, ref = _pair(kernel)
    x = torch.randn(2, 5, D)
    with torch.no_grad():
        with AttentionRecorder(ours) as recorder:
            ours(x, causal=True)
        weights = recorder.last(ours)
        _, expected = ref(
            x, x, x, attn_mask=~causal_mask(5), need_weights=True, average_attn_weights=False
        )
    assert (weights - expected).abs().max() <= FWD_TOL
    assert torch.equal(weights.triu(1), torch.zeros_like(weights))


def test_attention_dropout_is_off_in_eval_mode():
    torch.manual_seed(1)
    ours = MultiHeadAttention(D, H, dropout=0.5)
    x = torch.randn(2, 5, D)
    ours.eval()
    first = ours(x)
    plain = MultiHeadAttention(D, H, dropout=0.0)
    plain.load_state_dict(ours.state_dict())
    assert torch.equal(first, plain(x))
    ours.train()
    assert not torch.allclose(ours(x), first)  # and it is on in training mode


def test_invalid_head_configuration_raises():
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(10, 4)
    with pytest.raises(ValueError, match="multiple"):
        MultiHeadAttention(16, 4, num_kv_heads=3)
