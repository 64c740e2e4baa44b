"""Relative position schemes against references we did not write: Hugging Face's T5 attention,
and the papers' formulas written out pair by pair (Shaw, the Music Transformer's skew, ALiBi,
Transformer-XL), with and without a KV cache."""

from __future__ import annotations

import math

import pytest
import torch
from tolerance import assert_close_to_scale

from formers.nn import KVCache, MultiHeadAttention, Positions
from formers.nn.masks import causal_mask
from formers.nn.relative import (
    ALiBi,
    DisentangledPosition,
    MusicRelativeAttention,
    ShawRelativePosition,
    T5RelativeBias,
    XLRelativePosition,
    alibi_slopes,
    skew,
)

D, H = 32, 4
DH = D // H
F64 = torch.float64


def attention(positions, **options) -> MultiHeadAttention:
    torch.manual_seed(0)
    attn = MultiHeadAttention(D, H, positions=positions, **options).to(F64).eval()
    with torch.no_grad():
        for p in attn.parameters():
            p.normal_(std=0.3)
    return attn


def heads(x: torch.Tensor, proj: torch.nn.Linear) -> torch.Tensor:
    b, t, _ = x.shape
    return proj(x).view(b, t, H, DH).transpose(1, 2)  # (b, h, t, dh)


def by_formula(attn: MultiHeadAttention, x: torch.Tensor, scores_extra, value_extra=None):
    """softmax(q k^T * scale + extra) v (+ a value term), causal, through attn's projections."""
    q, k, v = heads(x, attn.q_proj), heads(x, attn.k_proj), heads(x, attn.v_proj)
    scale = attn.scale if attn.scale is not None else DH**-0.5
    t = x.size(1)
    scores = (q @ k.transpose(-2, -1)) * scale + scores_extra(q, k)
    weights = scores.masked_fill(~causal_mask(t), -torch.inf).softmax(-1)
    out = weights @ v
    if value_extra is not None:
        out = out + value_extra(weights)
    return attn.out_proj(out.transpose(1, 2).reshape(x.size(0), t, D))


def cached(attn: MultiHeadAttention, x: torch.Tensor, chunks=(3, 1, 4, 2)) -> torch.Tensor:
    state, parts, start = KVCache(), [], 0
    for size in chunks:
        parts.append(attn(x[:, start : start + size], causal=True, state=state))
        start += size
    return torch.cat(parts, dim=1)


# --- T5: Hugging Face's T5Attention from a tiny config, random weights ------------------------


@pytest.mark.parametrize("bidirectional", [True, False], ids=["encoder", "decoder"])
def test_t5_bias_and_attention_equal_hugging_faces(bidirectional):
    transformers = pytest.importorskip("transformers")
    from transformers.models.t5.modeling_t5 import T5Attention

    config = transformers.T5Config(
        d_model=D, d_kv=DH, num_heads=H, relative_attention_num_buckets=8,
        relative_attention_max_distance=20, is_decoder=not bidirectional, dropout_rate=0.0,
        attn_implementation="eager",
    )  # fmt: skip
    torch.manual_seed(1)
    ref = T5Attention(config, has_relative_attention_bias=True, layer_idx=0).to(F64).eval()
    with torch.no_grad():
        ref.relative_attention_bias.weight.normal_()
    scheme = T5RelativeBias(H, bidirectional=bidirectional, num_buckets=8, max_distance=20)
    ours = MultiHeadAttention(D, H, bias=False, scale=1.0, positions=scheme).to(F64).eval()
    with torch.no_grad():
        for mine, theirs in ((ours.q_proj, ref.q), (ours.k_proj, ref.k), (ours.v_proj, ref.v),
                             (ours.out_proj, ref.o)):  # fmt: skip
            mine.weight.copy_(theirs.weight)
        scheme.embedding.weight.copy_(ref.relative_attention_bias.weight)
    t = 40  # distances up to 39: exact, logarithmic and beyond max_distance
    x = torch.randn(2, t, D, dtype=F64)
    with torch.no_grad():
        positions = Positions.contiguous(0, t, x.device)
        assert_close_to_scale(scheme.bias(None, None, positions, 1.0), ref.compute_bias(t, t))
        mask = None if bidirectional else torch.zeros(1, 1, t, t, dtype=F64).masked_fill(
            ~causal_mask(t), torch.finfo(F64).min)  # fmt: skip
        expected = ref(x, mask=mask)[0]
        assert_close_to_scale(ours(x, causal=not bidirectional), expected)
        if not bidirectional:
            assert_close_to_scale(cached(ours, x, (5, 1, 30, 4)), expected)


def test_t5_refuses_buckets_it_cannot_split():
    with pytest.raises(ValueError, match="num_buckets must be >= 2"):
        T5RelativeBias(4, bidirectional=True, num_buckets=2)
    with pytest.raises(ValueError, match="max_distance must exceed the 8 exact buckets"):
        T5RelativeBias(4, bidirectional=True, num_buckets=32, max_distance=8)


# --- Shaw et al. 2018: eqs. 3-4 pair by pair -----------------------------------------------


@pytest.mark.parametrize("values", [True, False], ids=["keys-values", "keys"])
def test_shaw_equals_its_equations_pair_by_pair(values):
    scheme = ShawRelativePosition(DH, max_distance=3, values=values)
    attn = attention(scheme)
    x = torch.randn(2, 10, D, dtype=F64)
    i = torch.arange(10)
    index = (i[None, :] - i[:, None]).clamp(-3, 3) + 3  # (t, t): clip(j - i, -k, k) + k
    a_k = scheme.keys.weight[index]  # (t, t, dh): a^K_ij, one vector per pair
    scale = DH**-0.5

    def key_term(q, k):
        return torch.einsum("bhid,ijd->bhij", q, a_k) * scale

    def value_term(weights):
        return torch.einsum("bhij,ijd->bhid", weights, scheme.value_vectors.weight[index])

    with torch.no_grad():
        expected = by_formula(attn, x, key_term, value_term if values else None)
        assert_close_to_scale(attn(x, causal=True), expected)
        assert_close_to_scale(cached(attn, x), expected)


# --- Music Transformer: the skew equals Q E^r^T gathered per pair ------------------------------


@pytest.mark.parametrize("length", [7, 12], ids=["within-max_len", "beyond-max_len"])
def test_the_skew_equals_the_explicit_relative_logits(length):
    scheme = MusicRelativeAttention(H, DH, max_len=9).to(F64)
    q = torch.randn(2, H, length, DH, dtype=F64)
    i = torch.arange(length)
    back = (i[None, :] - i[:, None]).clamp(-(9 - 1), 0) + 9 - 1  # (t, t): rows of E^r
    explicit = torch.einsum("bhid,hijd->bhij", q, scheme.embeddings[:, back])  # O(L^2 D)
    got = scheme.bias(q, q, Positions.contiguous(0, length, q.device), 1.0)
    lower = causal_mask(length)
    assert_close_to_scale(got[..., lower], explicit[..., lower])
    toy = skew(torch.arange(9.0).view(3, 3))  # columns: distances -2, -1, 0
    assert [toy[i, : i + 1].tolist() for i in range(3)] == [[2], [4, 5], [6, 7, 8]]


def test_music_attention_decodes_with_a_cache_as_in_one_pass():
    attn = attention(MusicRelativeAttention(H, DH, max_len=16))
    x = torch.randn(2, 10, D, dtype=F64)
    with torch.no_grad():
        assert_close_to_scale(cached(attn, x), attn(x, causal=True))


# --- ALiBi --------------------------------------------------------------------------------


def test_alibi_slopes_are_the_papers():
    assert alibi_slopes(8).tolist() == [2.0**-i for i in range(1, 9)]
    assert alibi_slopes(6).tolist() == [2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8, 2.0**-1, 2.0**-3]


def test_alibi_equals_its_formula_and_decodes_with_a_cache():
    attn = attention(ALiBi(H))
    x = torch.randn(2, 10, D, dtype=F64)
    i = torch.arange(10)
    back = (i[:, None] - i[None, :]).clamp(min=0).to(F64)  # (t, t): how far back

    def linear(q, k):
        return -alibi_slopes(H).to(F64)[:, None, None] * back

    with torch.no_grad():
        expected = by_formula(attn, x, linear)
        assert_close_to_scale(attn(x, causal=True), expected)
        assert_close_to_scale(cached(attn, x), expected)


def test_an_alibi_model_trained_at_length_l_reads_2l_with_the_bias_continuing():
    """Train at 16 tokens, evaluate at 32: no position table to run out of, finite outputs, and
    the bias at the new distances is still -slope * distance."""
    from formers.nn import DecoderLayer, PreNormResidual
    from formers.nn.feed_forward import feed_forward
    from formers.nn.norms import make_norm

    torch.manual_seed(0)
    scheme = ALiBi(H)
    layers = [
        DecoderLayer(MultiHeadAttention(D, H, positions=scheme), None,
                     feed_forward("gelu", D, 2 * D), PreNormResidual(make_norm("layernorm", D)),
                     None, PreNormResidual(make_norm("layernorm", D)))
        for _ in range(2)
    ]  # fmt: skip
    from formers.nn import Decoder

    embed, decoder, head = torch.nn.Embedding(20, D), Decoder(layers), torch.nn.Linear(D, 20)
    params = [*embed.parameters(), *decoder.parameters(), *head.parameters()]
    optimizer = torch.optim.Adam(params, lr=1e-2)
    data = torch.arange(16).repeat(8, 2)[:, :17] % 20  # a counting pattern
    for _ in range(30):
        logits = head(decoder(embed(data[:, :16])))
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), data[:, 1:17].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 1.5
    long = torch.arange(32).repeat(2, 1) % 20
    with torch.no_grad():
        out = head(decoder(embed(long)))
        bias = scheme.bias(None, None, Positions.contiguous(0, 32, long.device), 1.0)
    assert torch.isfinite(out).all()
    assert bias[0, 0, 31, 0].item() == pytest.approx(-(2**-2) * 31)  # head 0 of 4: slope 1/4


# --- Transformer-XL: the four terms, over a memory and a segment -------------------------------


def test_xl_equals_its_four_terms_over_memory_and_segment():
    scheme = XLRelativePosition(D, H, DH)
    attn = attention(scheme)
    memory, segment = 4, 6
    x = torch.randn(2, memory + segment, D, dtype=F64)
    with torch.no_grad():
        q = heads(x[:, memory:], attn.q_proj)  # the segment's queries
        k, v = heads(x, attn.k_proj), heads(x, attn.v_proj)  # memory + segment keys
        i = torch.arange(memory, memory + segment)[:, None]
        j = torch.arange(memory + segment)[None, :]
        back = (i - j).clamp(min=0)  # (t, m + t): i - j
        inv_freq = 1.0 / 10000 ** (torch.arange(0, D, 2, dtype=F64) / D)
        r = torch.stack([torch.cat([(d * inv_freq).sin(), (d * inv_freq).cos()])
                         for d in range(memory + segment)])  # fmt: skip
        wr = scheme.r_proj(r).view(-1, H, DH)  # (n, h, dh): W_R R_n
        wr_pairs = wr[back]  # (t, m + t, h, dh)
        scores = (
            torch.einsum("bhid,bhjd->bhij", q, k)  # (a)
            + torch.einsum("bhid,ijhd->bhij", q, wr_pairs)  # (b)
            + torch.einsum("hd,bhjd->bhj", scheme.u, k)[:, :, None]  # (c)
            + torch.einsum("hd,ijhd->hij", scheme.v, wr_pairs)[None]  # (d)
        ) / math.sqrt(DH)
        visible = causal_mask(segment, memory + segment)
        weights = scores.masked_fill(~visible, -torch.inf).softmax(-1)
        expected = attn.out_proj((weights @ v).transpose(1, 2).reshape(2, segment, D))
        state = KVCache()
        attn(x[:, :memory], causal=True, state=state)  # the memory, as a cache
        assert_close_to_scale(attn(x[:, memory:], causal=True, state=state), expected)


# --- DeBERTa: Hugging Face's DebertaV2 disentangled attention from a tiny config ---------------


@pytest.mark.parametrize("share_att_key", [False, True], ids=["own-projections", "shared"])
@pytest.mark.parametrize("buckets", [0, 8], ids=["no-buckets", "log-buckets"])
def test_disentangled_attention_equals_debertav2(share_att_key, buckets):
    transformers = pytest.importorskip("transformers")
    from transformers.models.deberta_v2.modeling_deberta_v2 import DisentangledSelfAttention

    config = transformers.DebertaV2Config(
        hidden_size=D, num_attention_heads=H, relative_attention=True, pos_att_type=["c2p", "p2c"],
        position_buckets=buckets, max_relative_positions=12, share_att_key=share_att_key,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    torch.manual_seed(2)
    ref = DisentangledSelfAttention(config).to(F64).eval()
    span = buckets or 12
    table = torch.randn(2 * span, D, dtype=F64)  # P, shared by the layers (normed by the model)
    ours = MultiHeadAttention(D, H, scale=(3 * DH) ** -0.5).to(F64).eval()
    with torch.no_grad():
        for mine, theirs in ((ours.q_proj, ref.query_proj), (ours.k_proj, ref.key_proj),
                             (ours.v_proj, ref.value_proj)):  # fmt: skip
            mine.weight.copy_(theirs.weight)
            mine.bias.copy_(theirs.bias)
        ours.out_proj.weight.copy_(torch.eye(D, dtype=F64))  # HF's module ends before the output
        ours.out_proj.bias.zero_()
    projections = (ours.q_proj, ours.k_proj) if share_att_key else None
    scheme = DisentangledPosition(D, H, DH, table=lambda: table, span=span,
                                  position_buckets=buckets, max_relative_positions=12,
                                  projections=projections).to(F64)  # fmt: skip
    if not share_att_key:
        with torch.no_grad():
            scheme.pos_key_proj.load_state_dict(ref.pos_key_proj.state_dict())
            scheme.pos_query_proj.load_state_dict(ref.pos_query_proj.state_dict())
    ours.positions = scheme
    t = 20  # distances up to 19: beyond the buckets' exact range and max_relative_positions
    x = torch.randn(2, t, D, dtype=F64)
    keep = torch.ones(2, t, dtype=torch.bool)
    keep[1, 15:] = False  # padding
    with torch.no_grad():
        expected, _ = ref(x, keep[:, None, None, :].expand(2, 1, t, t), rel_embeddings=table)
        got = ours(x, mask=keep[:, None, None, :])
    # HF computes sqrt(3 d) in float32 (scaled_size_sqrt): its scores carry that rounding
    assert_close_to_scale(got[keep], expected[keep], rel=1e-6)


def test_log_buckets_keep_near_distances_and_the_sign():
    from formers.nn.relative import log_buckets

    distance = torch.tensor([-40, -5, -1, 0, 1, 3, 5, 40])
    buckets = log_buckets(distance, bucket_size=8, max_position=64)
    assert buckets[1:-1].tolist()[1:5] == [-1, 0, 1, 3]  # within bucket_size // 2: exact
    assert buckets[0] < -4 and buckets[-1] > 4 and buckets[-1] == -buckets[0]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ShawRelativePosition(DH, 0), "max_distance must be >= 1, got 0"),
        (lambda: MusicRelativeAttention(H, DH, max_len=0), "max_len must be >= 1, got 0"),
        (lambda: T5RelativeBias(H, bidirectional=False, num_buckets=1), "num_buckets must be >= 2"),
        (lambda: DisentangledPosition(D, H, DH, table=lambda: None, span=0), "span must be >= 1"),
        (lambda: DisentangledPosition(D, H, DH, table=lambda: None, span=4,
                                      attention_types=("p2p",)),
         r"attention_types must be some of \['c2p', 'p2c'\]"),  # fmt: skip
    ],
)
def test_relative_schemes_refuse_sizes_that_are_not_positive(make, message):
    with pytest.raises(ValueError, match=message):
        make()
