"""One conformance suite for attention: every mechanism x position scheme x mask.

Each row of :data:`SCHEMES` (a position scheme, or none) runs with each softmax kernel through
the same checks: output shapes and a backward pass; causality (no gradient reaches an earlier
position from a later one); padding invariance (padded keys change nothing); cache-vs-recompute
parity, token by token, for every scheme that decodes (relative positions with a cache are a
known bug class); a batch of left- or right-padded prompts decoded with a cache equals each
prompt alone; and ``weights @ v == out`` wherever weights are returned. A new mechanism or scheme
joins by adding one row. Everything runs in float64, where the parity checks can be tight.

Shapes: b batch, t length, D model width, H heads.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from tolerance import assert_close_to_scale

from formers.nn import (
    AttentionMask,
    AttentionRecorder,
    KVCache,
    MultiHeadAttention,
    Positions,
    RotaryEmbedding,
)
from formers.nn.kv_cache import row_positions
from formers.nn.relative import (
    ALiBi,
    DisentangledPosition,
    MusicRelativeAttention,
    ShawRelativePosition,
    T5RelativeBias,
    XLRelativePosition,
)

D, H = 24, 4
DH = D // H
F64 = torch.float64
DEBERTA_TABLE = torch.randn(2 * 8, D, generator=torch.Generator().manual_seed(5), dtype=F64)

# name -> (a factory of the scheme for causal attention, one for bidirectional attention)
SCHEMES: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
    "none": (lambda: None, lambda: None),
    "rotary": (lambda: RotaryEmbedding(DH, max_len=8), lambda: RotaryEmbedding(DH, max_len=8)),
    "shaw": (lambda: ShawRelativePosition(DH, 3), lambda: ShawRelativePosition(DH, 3)),
    "shaw-keys-only": (
        lambda: ShawRelativePosition(DH, 3, values=False),
        lambda: ShawRelativePosition(DH, 3, values=False),
    ),
    "music": (lambda: MusicRelativeAttention(H, DH, max_len=6), None),  # causal only
    "t5": (
        lambda: T5RelativeBias(H, bidirectional=False, num_buckets=8, max_distance=12),
        lambda: T5RelativeBias(H, bidirectional=True, num_buckets=8, max_distance=12),
    ),
    "alibi": (lambda: ALiBi(H), lambda: ALiBi(H, causal=False)),
    "transformer-xl": (lambda: XLRelativePosition(D, H, DH), None),  # causal only
    "deberta": (
        lambda: DisentangledPosition(D, H, DH, table=lambda: DEBERTA_TABLE, span=8,
                                     position_buckets=8, max_relative_positions=16),
        lambda: DisentangledPosition(D, H, DH, table=lambda: DEBERTA_TABLE, span=8,
                                     position_buckets=8, max_relative_positions=16),
    ),  # fmt: skip
}
KERNELS = ["sdpa", "eager"]
CAUSAL = [name for name, (causal, _) in SCHEMES.items() if causal is not None]
BIDIRECTIONAL = [name for name, (_, both) in SCHEMES.items() if both is not None]


def build(scheme: str, kernel: str, causal: bool) -> MultiHeadAttention:
    torch.manual_seed(0)
    make = SCHEMES[scheme][0 if causal else 1]
    attn = MultiHeadAttention(D, H, kernel=kernel, positions=make()).to(F64).eval()
    with torch.no_grad():
        for p in attn.parameters():  # large enough that every term matters
            p.normal_(std=0.4)
    return attn


def inputs(b: int = 2, t: int = 9) -> torch.Tensor:
    return torch.randn(b, t, D, dtype=F64, generator=torch.Generator().manual_seed(1))


# --- shapes, backward, causality -----------------------------------------------------------


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("scheme", CAUSAL)
def test_shapes_backward_and_causality(scheme, kernel):
    attn = build(scheme, kernel, causal=True).train()
    x = inputs().requires_grad_()
    out = attn(x, causal=True)
    assert out.shape == x.shape
    out[:, 4].sum().backward()  # position 4 may depend on 0..4 only
    assert torch.all(x.grad[:, 5:] == 0), "a later position leaked into an earlier one"
    assert x.grad[:, :5].abs().sum() > 0
    grads = [p.grad for p in attn.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    if attn.positions is not None and any(True for _ in attn.positions.parameters()):
        assert any(p.grad.abs().sum() > 0 for p in attn.positions.parameters())


# --- padding invariance -----------------------------------------------------------------------


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("scheme", sorted(set(CAUSAL) | set(BIDIRECTIONAL)))
def test_padded_keys_change_nothing(scheme, kernel, causal):
    if SCHEMES[scheme][0 if causal else 1] is None:
        pytest.skip(f"{scheme} is {'bidirectional' if causal else 'causal'} only")
    attn = build(scheme, kernel, causal)
    x = inputs()
    keep = torch.ones(2, 9, dtype=torch.bool)
    keep[1, 6:] = False  # row 1: three padding positions at the end
    changed = x.clone()
    changed[1, 6:] = torch.randn(3, D, dtype=F64)
    mask = AttentionMask(keys=keep, causal=causal)
    with torch.no_grad():
        a, b = attn(x, mask=mask), attn(changed, mask=mask)
    assert_close_to_scale(a[keep], b[keep])


# --- cache-vs-recompute, token by token -------------------------------------------------------


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("scheme", CAUSAL)
def test_decoding_token_by_token_equals_one_pass(scheme, kernel):
    attn = build(scheme, kernel, causal=True)
    x = inputs(t=10)  # longer than the rotary table and Music's max_len: both extend
    with torch.no_grad():
        full = attn(x, causal=True)
        state = KVCache(capacity=2)
        steps = [attn(x[:, i : i + 1], causal=True, state=state) for i in range(10)]
    assert_close_to_scale(torch.cat(steps, dim=1), full)


# --- padded prompts with a cache equal each prompt alone ------------------------------------------


def decode_padded(attn, prompt_x, real, new_x):
    """Feed a padded batch of prompts, then one new token per row per step, with a cache that
    keeps the padding and each row's positions (as DecoderCache does)."""
    state = KVCache()
    positions = row_positions(real)
    first = attn(prompt_x, mask=AttentionMask(keys=real, causal=True), state=state,
                 positions=Positions(positions, positions))  # fmt: skip
    keys, key_positions, outs = real, positions, []
    for i in range(new_x.size(1)):
        keys = torch.cat([keys, torch.ones(keys.size(0), 1, dtype=torch.bool)], dim=1)
        step = real.sum(dim=1, keepdim=True) + i  # (b, 1): each row's next position
        key_positions = torch.cat([key_positions, step], dim=1)
        outs.append(attn(new_x[:, i : i + 1], mask=AttentionMask(keys=keys, causal=True),
                         state=state, positions=Positions(step, key_positions)))  # fmt: skip
    return first, torch.cat(outs, dim=1)


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("scheme", CAUSAL)
def test_padded_prompts_decode_with_a_cache_as_each_alone(scheme, kernel, side):
    attn = build(scheme, kernel, causal=True)
    lengths, width = [3, 7, 5], 7
    prompts = [inputs(1, n)[0] for n in lengths]
    new = inputs(3, 3)
    batch = torch.zeros(3, width, D, dtype=F64)
    real = torch.zeros(3, width, dtype=torch.bool)
    for row, prompt in enumerate(prompts):
        where = slice(width - len(prompt), width) if side == "left" else slice(0, len(prompt))
        batch[row, where], real[row, where] = prompt, True
    with torch.no_grad():
        first, steps = decode_padded(attn, batch, real, new)
        for row, prompt in enumerate(prompts):
            state = KVCache()
            alone = attn(prompt[None], causal=True, state=state)[0]
            alone_steps = torch.cat([attn(new[row : row + 1, i : i + 1], causal=True, state=state)
                                     for i in range(3)], dim=1)[0]  # fmt: skip
            assert_close_to_scale(first[row][real[row]], alone)
            assert_close_to_scale(steps[row], alone_steps)


# --- weights @ v == out -------------------------------------------------------------------------


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
@pytest.mark.parametrize("scheme", sorted(set(CAUSAL) | set(BIDIRECTIONAL)))
def test_recorded_weights_times_values_are_the_output(scheme, causal):
    if SCHEMES[scheme][0 if causal else 1] is None:
        pytest.skip(f"{scheme} is {'bidirectional' if causal else 'causal'} only")
    attn = build(scheme, "sdpa", causal)
    x = inputs()
    keep = torch.ones(2, 9, dtype=torch.bool)
    keep[0, 7:] = False  # right padding: every query sees a key, so every row sums to 1
    mask = AttentionMask(keys=keep, causal=causal)
    with torch.no_grad(), AttentionRecorder(attn) as recorder:
        out = attn(x, mask=mask)
    (weights,) = recorder.of(attn)
    assert_close_to_scale(weights.sum(-1), torch.ones_like(weights.sum(-1)))
    v = attn.v_proj(x).view(2, 9, H, DH).transpose(1, 2)
    mixed = weights @ v
    if attn.positions is not None and attn.positions.values:
        mixed = mixed + attn.positions.value(weights, Positions.contiguous(0, 9, x.device))
    assert_close_to_scale(attn.out_proj(mixed.transpose(1, 2).reshape(2, 9, D)), out)
    with torch.no_grad():
        assert_close_to_scale(attn(x, mask=mask), out)  # recording changed nothing
