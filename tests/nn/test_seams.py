"""The injected parts of attention: mechanisms and their capabilities, position schemes, the
mask object, the score bias, and the attention recorder."""

from __future__ import annotations

import math

import pytest
import torch
from tolerance import assert_close_to_scale

from formers.nn import (
    AttentionMask,
    AttentionMechanism,
    AttentionRecorder,
    KVCache,
    MechanismError,
    MultiHeadAttention,
    Positions,
    PositionScheme,
    RotaryEmbedding,
    SoftmaxAttention,
    get_mechanism,
)
from formers.nn.kernels import eager_attention, sdpa_attention
from formers.nn.masks import causal_mask

D, H = 16, 4


class PlainMechanism(AttentionMechanism):
    """A mechanism that can only attend, bidirectionally, to its own sequence."""

    name = "plain"
    capabilities = frozenset()

    def forward(self, q, k, v, *, mask=None, bias=None, value=None, state=None, scale=None,
                dropout_p=0.0, need_weights=False):  # fmt: skip
        return eager_attention(q, k, v)[0], None


class DistanceBias(PositionScheme):
    """A bias of -|i - j| per head slope: ALiBi's shape, for testing the seam only."""

    name = "distance"
    biases = True

    def __init__(self) -> None:
        super().__init__()
        self.slopes = torch.linspace(0.5, 2.0, H)

    def bias(self, q, k, positions, scale):
        distance = positions.queries[:, None] - positions.keys[None, :]  # (t_q, t_k)
        return -self.slopes[:, None, None] * distance.abs()  # (h, t_q, t_k)


def test_mechanisms_by_name_and_their_capabilities():
    for name in ("sdpa", "eager"):
        mechanism = get_mechanism(name)
        assert isinstance(mechanism, SoftmaxAttention) and mechanism.kernel_name == name
        assert {"causal", "incremental", "cross", "weights", "bias"} <= mechanism.capabilities
    with pytest.raises(ValueError, match=r"unknown attention mechanism 'flash'; choose one of"):
        get_mechanism("flash")


def test_asking_a_mechanism_for_what_it_lacks_names_both():
    attn = MultiHeadAttention(D, H, mechanism=PlainMechanism())
    x = torch.randn(2, 3, D)
    attn(x)  # what it can do, it does
    with pytest.raises(MechanismError, match="the 'plain' attention mechanism cannot decode"):
        attn(x, state=KVCache())
    with (
        pytest.raises(MechanismError, match="'plain' attention mechanism cannot return its"),
        AttentionRecorder(attn),
    ):
        attn(x)


def test_a_mechanism_without_cross_attention_or_bias_is_refused_at_build_time():
    with pytest.raises(MechanismError, match="cannot attend to another sequence"):
        MultiHeadAttention(D, H, mechanism=PlainMechanism(), cross=True)
    with pytest.raises(MechanismError, match="cannot add a position bias.*'distance' position"):
        MultiHeadAttention(D, H, mechanism=PlainMechanism(), positions=DistanceBias())


def test_a_self_attention_position_scheme_is_refused_on_cross_attention():
    with pytest.raises(ValueError, match="'rotary' position scheme has no meaning on cross"):
        MultiHeadAttention(D, H, positions=RotaryEmbedding(D // H), cross=True)


@pytest.mark.parametrize("kernel", ["sdpa", "eager"])
def test_a_score_bias_enters_as_the_formula_says(kernel):
    """softmax(q k^T / sqrt(d) + bias) v, with a causal mask, against the formula written here."""
    q, k, v = torch.randn(2, H, 5, 8), torch.randn(2, H, 5, 8), torch.randn(2, H, 5, 8)
    bias = torch.randn(1, H, 5, 5)
    out, _ = {"sdpa": sdpa_attention, "eager": eager_attention}[kernel](
        q, k, v, causal=True, bias=bias
    )
    scores = q @ k.transpose(-2, -1) / math.sqrt(8) + bias
    scores = scores.masked_fill(~causal_mask(5), -torch.inf)
    expected = scores.softmax(-1) @ v
    assert_close_to_scale(out, expected)


@pytest.mark.parametrize("kernel", ["sdpa", "eager"])
def test_a_bias_scheme_is_the_same_with_and_without_a_cache(kernel):
    """The scheme is told the positions of all keys, cached ones included."""
    attn = MultiHeadAttention(D, H, kernel=kernel, positions=DistanceBias()).double().eval()
    x = torch.randn(2, 6, D, dtype=torch.float64)
    with torch.no_grad():
        full = attn(x, causal=True)
        state, parts = KVCache(), []
        for start, end in ((0, 2), (2, 3), (3, 6)):
            parts.append(attn(x[:, start:end], causal=True, state=state))
    assert_close_to_scale(torch.cat(parts, dim=1), full)
    unbiased = MultiHeadAttention(D, H, kernel=kernel).double().eval()
    unbiased.load_state_dict(attn.state_dict())
    assert (unbiased(x, causal=True) - full).abs().max() > 1e-3  # the bias is used


def test_recorded_weights_are_those_computed_bias_included():
    attn = MultiHeadAttention(D, H, positions=DistanceBias()).double().eval()
    x = torch.randn(2, 5, D, dtype=torch.float64)
    with torch.no_grad(), AttentionRecorder(attn) as recorder:
        out = attn(x, causal=True)
    (weights,) = recorder.of(attn)
    assert weights.shape == (2, H, 5, 5)
    b = x.size(0)
    v = attn.v_proj(x).view(b, 5, H, D // H).transpose(1, 2)
    mixed = (weights @ v).transpose(1, 2).reshape(b, 5, D)  # weights @ v == out
    assert_close_to_scale(attn.out_proj(mixed), out)
    q = attn.q_proj(x).view(b, 5, H, D // H).transpose(1, 2)
    k = attn.k_proj(x).view(b, 5, H, D // H).transpose(1, 2)
    positions = Positions.contiguous(0, 5, x.device)
    scores = q @ k.transpose(-2, -1) / math.sqrt(D // H) + attn.positions.bias(q, k, positions, 0.5)
    expected = scores.masked_fill(~causal_mask(5), -torch.inf).softmax(-1)
    assert_close_to_scale(weights, expected)


def test_nothing_is_recorded_outside_the_block_and_recorders_do_not_nest():
    attn = MultiHeadAttention(D, H).eval()
    x = torch.randn(1, 3, D)
    recorder = AttentionRecorder(attn)
    with recorder:
        attn(x)
        with pytest.raises(RuntimeError, match="already being recorded"), AttentionRecorder(attn):
            pass
    attn(x)
    assert len(recorder.of(attn)) == 1 and attn.recorder is None
    with pytest.raises(KeyError), AttentionRecorder(attn):
        raise KeyError("an error inside the block")
    assert attn.recorder is None  # removed on error too


def test_the_mask_object_is_built_once_per_shape_and_shared():
    keys = torch.tensor([[True, True, False], [True, True, True]])
    mask = AttentionMask(keys=keys, causal=True)
    dense, causal = mask.for_kernel(3, 3, torch.device("cpu"))
    assert causal and dense.shape == (2, 1, 1, 3)
    assert mask.for_kernel(3, 3, torch.device("cpu"))[0] is dense  # built once
    window = AttentionMask(patterns=(lambda q, k: (q - k).abs() <= 1,))
    dense, causal = window.for_kernel(2, 4, torch.device("cpu"))  # the queries are keys 2 and 3
    assert not causal and dense.tolist() == [[False, True, True, True], [False, False, True, True]]
    with pytest.raises(ValueError, match="covers 3 keys, but there are 4"):
        mask.for_kernel(1, 4, torch.device("cpu"))
