"""Feed-forward networks against their formulas written with ``torch.nn.functional``:
``act(x W_1 + b_1) W_2 + b_2`` (arXiv 1706.03762, eq. 2) and the gated
``(act(x W + b) * (x V + c)) W_2 + b_2`` (Shazeer 2020, arXiv 2002.05202)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from formers.nn import FeedForward, GatedFeedForward, feed_forward
from formers.nn.feed_forward import FEED_FORWARD_KINDS

D, D_FF = 8, 12

UNGATED = {
    "relu": F.relu,
    "gelu": lambda x: F.gelu(x, approximate="none"),
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "silu": lambda x: x * torch.sigmoid(x),
}
GATED = {
    "glu": torch.sigmoid,
    "reglu": F.relu,
    "geglu": lambda x: F.gelu(x, approximate="none"),
    "swiglu": lambda x: x * torch.sigmoid(x),
}


def test_kinds_are_all_covered():
    assert sorted([*UNGATED, *GATED]) == sorted(FEED_FORWARD_KINDS)


def _randomize(module):
    with torch.no_grad():
        for p in module.parameters():
            p.normal_()


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kind", list(UNGATED))
def test_ungated_formula(kind, bias):
    ffn = feed_forward(kind, D, D_FF, bias=bias)
    assert isinstance(ffn, FeedForward)
    _randomize(ffn)
    x = torch.randn(2, 5, D)
    b1 = ffn.up.bias if bias else None
    b2 = ffn.down.bias if bias else None
    expected = F.linear(UNGATED[kind](F.linear(x, ffn.up.weight, b1)), ffn.down.weight, b2)
    assert ffn.up.weight.shape == (D_FF, D) and ffn.down.weight.shape == (D, D_FF)
    assert (ffn.up.bias is None) == (not bias)
    assert torch.allclose(ffn(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kind", list(GATED))
def test_gated_formula(kind, bias):
    ffn = feed_forward(kind, D, D_FF, bias=bias)
    assert isinstance(ffn, GatedFeedForward)
    _randomize(ffn)
    x = torch.randn(2, 5, D)

    def lin(layer, inp):
        return F.linear(inp, layer.weight, layer.bias if bias else None)

    expected = lin(ffn.down, GATED[kind](lin(ffn.gate, x)) * lin(ffn.up, x))
    assert (ffn.gate.bias is None) == (not bias)
    assert torch.allclose(ffn(x), expected, rtol=1e-5, atol=1e-5)


def test_gate_and_up_are_not_interchangeable():
    """The activation applies to the gate only: swapping the two projections changes the output
    (guards the formula test above against a symmetric mistake)."""
    ffn = feed_forward("swiglu", D, D_FF)
    _randomize(ffn)
    x = torch.randn(3, D)
    swapped = feed_forward("swiglu", D, D_FF)
    swapped.load_state_dict(ffn.state_dict())
    with torch.no_grad():
        swapped.gate.load_state_dict(ffn.up.state_dict())
        swapped.up.load_state_dict(ffn.gate.state_dict())
    assert not torch.allclose(ffn(x), swapped(x), atol=1e-3)


def test_dropout_only_in_training():
    ffn = feed_forward("relu", D, D_FF, dropout=0.5)
    x = torch.randn(4, D)
    ffn.eval()
    plain = feed_forward("relu", D, D_FF)
    plain.load_state_dict(ffn.state_dict())
    assert torch.equal(ffn(x), plain(x))
    ffn.train()
    assert not torch.allclose(ffn(x), plain(x))


def test_unknown_kind_lists_valid_kinds():
    with pytest.raises(ValueError) as info:
        feed_forward("tanh", D, D_FF)
    message = str(info.value)
    assert "tanh" in message
    for kind in FEED_FORWARD_KINDS:
        assert repr(kind) in message


def test_unknown_activation_of_the_classes():
    with pytest.raises(ValueError, match="relu"):
        FeedForward(D, D_FF, activation="swish")
    with pytest.raises(ValueError, match="silu"):
        GatedFeedForward(D, D_FF, activation="swish")
