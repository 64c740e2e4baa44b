"""Invariants every variant of the encoder-decoder Transformer must satisfy.

Each variant is built with ``build_transformer(TransformerConfig(...))`` and run through the same
checks: shapes and gradients, causality, source-padding invariance, KV-cache parity (step by step,
in chunks, and after beam reordering), attention maps, and dropout. The variants are not the full
product of the options; together they cover every option at least once.

Shapes: b batch, s source length, t target length, V target vocabulary, h heads.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from formers.models import TransformerConfig, build_transformer

PAD, BOS, EOS = 0, 1, 2
FIRST_WORD = 3  # ids below are special tokens
VOCAB = 37
TOL = 1e-5

TINY = dict(
    vocab_size=VOCAB,
    d_model=32,
    d_ff=64,
    num_heads=4,
    num_encoder_layers=2,
    num_decoder_layers=2,
    dropout=0.0,
    max_positions=128,
)

# Together these cover: post/pre-norm, layernorm/rmsnorm, relu/gelu/swiglu,
# sinusoidal/learned/rotary, MHA/GQA/MQA, sdpa/eager, shared/separate vocabularies, tied/untied
# output, with/without biases, scaled/unscaled embeddings, and unequal stack depths; and Marian's
# options: [sin | cos] sinusoid halves, an output bias, SiLU, and BOS = PAD.
VARIANTS = {
    "paper": dict(),
    "prenorm-rmsnorm-swiglu-rotary-gqa": dict(
        norm_first=True, norm="rmsnorm", activation="swiglu", positions="rotary", num_kv_heads=2
    ),
    "prenorm-gelu-learned-mqa-eager": dict(
        norm_first=True, activation="gelu", positions="learned", num_kv_heads=1, kernel="eager"
    ),
    "postnorm-rmsnorm-rotary-mqa-eager": dict(
        norm="rmsnorm", positions="rotary", num_kv_heads=1, kernel="eager"
    ),
    "separate-vocab-gelu-gqa-eager": dict(
        share_embeddings=False, tgt_vocab_size=41, activation="gelu", num_kv_heads=2, kernel="eager"
    ),
    "separate-vocab-untied-swiglu-learned-prenorm": dict(
        share_embeddings=False,
        tgt_vocab_size=29,
        tie_output=False,
        activation="swiglu",
        positions="learned",
        norm_first=True,
    ),
    "no-bias-unscaled-prenorm-rmsnorm": dict(
        bias=False, scale_embeddings=False, norm_first=True, norm="rmsnorm"
    ),
    "marian-halves-output-bias-silu-bos-is-pad": dict(
        positions="sinusoidal_halves", output_bias=True, activation="silu", bos_id=PAD
    ),
    "1+3-layers-rotary-gelu-prenorm": dict(
        num_encoder_layers=1,
        num_decoder_layers=3,
        positions="rotary",
        activation="gelu",
        norm_first=True,
    ),
}


@pytest.fixture(params=list(VARIANTS.values()), ids=list(VARIANTS))
def cfg(request) -> TransformerConfig:
    return TransformerConfig(**{**TINY, **request.param})


def build(cfg: TransformerConfig):
    model = build_transformer(cfg)
    model.eval()
    return model


def words(gen: torch.Generator, shape: tuple[int, ...], vocab: int) -> torch.Tensor:
    """Random non-special token ids."""
    return torch.randint(FIRST_WORD, vocab, shape, generator=gen)


def pad_right(seqs: list[torch.Tensor], length: int | None = None) -> torch.Tensor:
    """Stack 1-D sequences into ``(b, length)``, right-padded with ``PAD``."""
    length = max(len(s) for s in seqs) if length is None else length
    out = torch.full((len(seqs), length), PAD, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out


def target_prefix(gen: torch.Generator, b: int, t: int, vocab: int) -> torch.Tensor:
    """``(b, t)`` decoder inputs: BOS then random words."""
    tgt = words(gen, (b, t), vocab)
    tgt[:, 0] = BOS
    return tgt


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


# --- shapes and gradients -------------------------------------------------------------------


def test_shape_and_backward(cfg):
    model = build(cfg).train()  # dropout is 0, so train mode is deterministic
    gen = torch.Generator().manual_seed(1)
    V = cfg.target_vocab_size
    src = pad_right([words(gen, (n,), cfg.vocab_size) for n in (7, 4, 5)])  # (3, 7)
    tgt = pad_right([words(gen, (n,), V) for n in (6, 3, 5)])  # (3, 6)
    tgt_in = torch.cat([torch.full((3, 1), BOS), tgt[:, :-1]], dim=1)
    logits = model(src, tgt_in)
    assert logits.shape == (3, 6, V)
    assert model.vocab_size == V
    assert torch.isfinite(logits).all()

    loss = F.cross_entropy(logits.reshape(-1, V), tgt.reshape(-1), ignore_index=PAD)
    loss.backward()
    params = dict(model.named_parameters())
    assert params, "the model has no parameters"
    for name, p in params.items():
        assert p.requires_grad, name
        assert p.grad is not None, f"{name} got no gradient: it does not take part in forward"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
        # The key bias adds q.b_k to every score of a query, which softmax ignores, so its
        # gradient is zero in exact arithmetic; every other parameter must be used.
        if not name.endswith("k_proj.bias"):
            assert p.grad.abs().sum() > 0, f"{name} has an all-zero gradient"


def test_config_is_attached_and_vocab_sizes(cfg):
    model = build(cfg)
    assert model.config == cfg
    assert model.src_embed.token.num_embeddings == cfg.vocab_size
    assert model.tgt_embed.token.num_embeddings == cfg.target_vocab_size
    assert model.generator.out_features == cfg.target_vocab_size
    assert (model.pad_id, model.bos_id, model.eos_id) == (cfg.pad_id, cfg.bos_id, cfg.eos_id)


# --- causality --------------------------------------------------------------------------------


@torch.no_grad()
def test_decoder_is_causal(cfg):
    model = build(cfg)
    gen = torch.Generator().manual_seed(2)
    V = cfg.target_vocab_size
    src = pad_right([words(gen, (n,), cfg.vocab_size) for n in (6, 4)])
    tgt = target_prefix(gen, 2, 8, V)
    logits = model(src, tgt)
    for j in (1, 4, 7):
        changed = tgt.clone()
        changed[:, j] = (tgt[:, j] - FIRST_WORD + 1) % (V - FIRST_WORD) + FIRST_WORD
        assert (changed[:, j] != tgt[:, j]).all()
        other = model(src, changed)
        assert max_diff(other[:, :j], logits[:, :j]) <= 1e-6, f"position < {j} saw token {j}"
        for row in range(2):
            assert max_diff(other[row, j], logits[row, j]) > 1e-3, f"position {j} ignored itself"


@torch.no_grad()
def test_every_target_position_sees_the_source(cfg):
    model = build(cfg)
    gen = torch.Generator().manual_seed(3)
    src = words(gen, (1, 6), cfg.vocab_size)
    tgt = target_prefix(gen, 1, 5, cfg.target_vocab_size)
    logits = model(src, tgt)
    changed = src.clone()
    changed[0, -1] = (src[0, -1] - FIRST_WORD + 1) % (cfg.vocab_size - FIRST_WORD) + FIRST_WORD
    other = model(changed, tgt)
    for i in range(tgt.size(1)):
        assert max_diff(other[0, i], logits[0, i]) > 1e-4, f"target position {i} ignores the source"


# --- padding ----------------------------------------------------------------------------------


@torch.no_grad()
def test_source_padding_does_not_change_logits(cfg):
    model = build(cfg)
    gen = torch.Generator().manual_seed(4)
    src = words(gen, (1, 5), cfg.vocab_size)
    tgt = target_prefix(gen, 1, 6, cfg.target_vocab_size)
    alone = model(src, tgt)
    for extra in (1, 4):
        padded = torch.cat([src, torch.full((1, extra), PAD)], dim=1)
        assert max_diff(model(padded, tgt), alone) <= TOL


@torch.no_grad()
def test_batching_sentences_of_different_lengths_matches_running_them_alone(cfg):
    model = build(cfg)
    gen = torch.Generator().manual_seed(5)
    src_lengths, tgt_lengths = (5, 8, 3), (4, 7, 2)
    srcs = [words(gen, (n,), cfg.vocab_size) for n in src_lengths]
    tgts = [target_prefix(gen, 1, n, cfg.target_vocab_size)[0] for n in tgt_lengths]
    batched = model(pad_right(srcs, 10), pad_right(tgts))
    for i, (s, t) in enumerate(zip(srcs, tgts, strict=True)):
        alone = model(s[None], t[None])[0]
        assert max_diff(batched[i, : len(t)], alone) <= TOL, f"sentence {i}"


def test_an_empty_source_in_the_batch_is_harmless(cfg):
    # an empty line in a test set: every key of its cross-attention is masked
    model = build(cfg)
    gen = torch.Generator().manual_seed(14)
    src = pad_right([words(gen, (5,), cfg.vocab_size), torch.empty(0, dtype=torch.long)], 6)
    tgt = target_prefix(gen, 2, 4, cfg.target_vocab_size)
    with torch.no_grad():
        logits = model(src, tgt)
        assert torch.isfinite(logits).all()
        assert max_diff(logits[0], model(src[:1, :5], tgt[:1])[0]) <= TOL
        state = model.init_decoding(src)
        for i in range(tgt.size(1)):
            step = model.decode_step(tgt[:, i : i + 1], state)
            assert torch.isfinite(step).all()
            assert max_diff(step, logits[:, i]) <= TOL
    model.train()
    model(src, tgt).logsumexp(-1).mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


# --- KV-cache parity --------------------------------------------------------------------------


@torch.no_grad()
def test_incremental_decoding_matches_full_recomputation(cfg):
    model = build(cfg)
    gen = torch.Generator().manual_seed(6)
    src = pad_right([words(gen, (n,), cfg.vocab_size) for n in (6, 3)])
    tgt = target_prefix(gen, 2, 10, cfg.target_vocab_size)
    state = model.init_decoding(src)
    assert state.batch_size == 2
    assert state.src_lengths.tolist() == [6, 3]
    for i in range(tgt.size(1)):
        step = model.decode_step(tgt[:, i : i + 1], state)
        assert step.shape == (2, cfg.target_vocab_size)
        assert state.cache.length == i + 1
        full = model(src, tgt[:, : i + 1])[:, i]
        assert max_diff(step, full) <= TOL, f"step {i}"


@torch.no_grad()
def test_decoding_in_chunks_matches_full_recomputation(cfg):
    model = build(cfg)
    gen = torch.Generator().manual_seed(7)
    src = pad_right([words(gen, (n,), cfg.vocab_size) for n in (4, 7)])
    tgt = target_prefix(gen, 2, 12, cfg.target_vocab_size)
    full = model(src, tgt)
    state = model.init_decoding(src)

    # prefill 4 tokens at once: every position of the chunk must match
    chunk = model.decode(tgt[:, :4], state.memory, state.memory_mask, cache=state.cache)
    assert chunk.shape == (2, 4, cfg.target_vocab_size)
    assert max_diff(chunk, full[:, :4]) <= TOL
    # then one token at a time, then a chunk of 3 through decode_step, then one more
    for i in (4, 5, 6):
        assert max_diff(model.decode_step(tgt[:, i : i + 1], state), full[:, i]) <= TOL, i
    assert max_diff(model.decode_step(tgt[:, 7:10], state), full[:, 9]) <= TOL
    assert state.cache.length == 10
    chunk = model.decode(tgt[:, 10:12], None, state.memory_mask, cache=state.cache)
    assert max_diff(chunk, full[:, 10:12]) <= TOL


@torch.no_grad()
def test_incremental_decoding_past_the_initial_cache_capacity(cfg):
    # the self-attention cache starts with room for 64 positions and grows on demand
    model = build(cfg)
    gen = torch.Generator().manual_seed(8)
    src = pad_right([words(gen, (n,), cfg.vocab_size) for n in (5, 9)])
    tgt = target_prefix(gen, 2, 70, cfg.target_vocab_size)
    full = model(src, tgt)
    state = model.init_decoding(src)
    model.decode_step(tgt[:, :60], state)
    for i in range(60, 70):
        assert max_diff(model.decode_step(tgt[:, i : i + 1], state), full[:, i]) <= TOL, i


@pytest.mark.parametrize("expand", ["before-first-step", "after-first-step"])
@torch.no_grad()
def test_incremental_decoding_after_beam_reordering(cfg, expand):
    model = build(cfg)
    gen = torch.Generator().manual_seed(9)
    V = cfg.target_vocab_size
    b, k = 2, 3
    src = pad_right([words(gen, (n,), cfg.vocab_size) for n in (7, 4)])
    state = model.init_decoding(src)
    rows = torch.arange(b)  # which source each row of the state decodes
    history = torch.empty((b, 0), dtype=torch.long)  # tokens fed so far, per row

    def step(tokens: torch.Tensor) -> None:
        nonlocal history
        logits = model.decode_step(tokens, state)
        history = torch.cat([history, tokens], dim=1)
        full = model(src[rows], history)[:, -1]
        assert logits.shape == (rows.numel(), V)
        assert max_diff(logits, full) <= TOL, f"length {history.size(1)}, rows {rows.tolist()}"

    def reorder(indices: torch.Tensor) -> None:
        nonlocal history, rows
        state.reorder(indices)
        history, rows = history[indices], rows[indices]

    # k beams per source, made before the first step or after it (the cross-attention cache is
    # then already filled and must be expanded too)
    if expand == "before-first-step":
        reorder(torch.arange(b).repeat_interleave(k))
        step(torch.full((b * k, 1), BOS))
    else:
        step(torch.full((b, 1), BOS))
        reorder(torch.arange(b).repeat_interleave(k))
    assert state.batch_size == b * k
    for _ in range(3):
        step(words(gen, (b * k, 1), V))  # a different token per beam
    # beam search: each source keeps some of its own beams, some of them twice
    reorder(torch.tensor([1, 1, 0, 5, 3, 3]))
    for _ in range(3):
        step(words(gen, (b * k, 1), V))
    # any selection with repeats, across sources too
    reorder(torch.randint(0, b * k, (b * k,), generator=gen))
    for _ in range(2):
        step(words(gen, (b * k, 1), V))
    # finished hypotheses leave the batch, and a chunk of several tokens still works
    reorder(torch.tensor([4, 0, 2]))
    step(words(gen, (3, 1), V))
    step(words(gen, (3, 3), V))
    step(words(gen, (3, 1), V))
    assert state.cache.length == history.size(1)
    assert state.src_lengths.tolist() == (src[rows] != PAD).sum(1).tolist()


# --- positions beyond the precomputed tables ----------------------------------------------------


@pytest.mark.parametrize("positions", ["sinusoidal", "sinusoidal_halves", "rotary"])
@torch.no_grad()
def test_positions_beyond_the_precomputed_table_continue_it(positions):
    short = TransformerConfig(**{**TINY, "positions": positions, "max_positions": 8})
    long = short.replace(max_positions=64)
    model_short, model_long = build(short), build(long)
    model_long.load_state_dict(model_short.state_dict())
    gen = torch.Generator().manual_seed(10)
    src = words(gen, (2, 12), VOCAB)
    tgt = target_prefix(gen, 2, 20, VOCAB)
    assert max_diff(model_short(src, tgt), model_long(src, tgt)) <= TOL
    state = model_short.init_decoding(src)
    full = model_long(src, tgt)
    for i in range(tgt.size(1)):
        assert max_diff(model_short.decode_step(tgt[:, i : i + 1], state), full[:, i]) <= TOL, i


@torch.no_grad()
def test_learned_positions_refuse_inputs_longer_than_max_positions():
    model = build(TransformerConfig(**{**TINY, "positions": "learned", "max_positions": 8}))
    src = torch.full((1, 9), FIRST_WORD)
    with pytest.raises(ValueError, match="max_positions"):
        model(src, torch.full((1, 3), BOS))


# --- attention maps ---------------------------------------------------------------------------


@torch.no_grad()
def test_forward_with_attention(cfg):
    model = build(cfg)
    gen = torch.Generator().manual_seed(11)
    src_lengths = (6, 3, 8)
    src = pad_right([words(gen, (n,), cfg.vocab_size) for n in src_lengths], 9)
    tgt = target_prefix(gen, 3, 5, cfg.target_vocab_size)
    b, s, t, h = 3, 9, 5, cfg.num_heads
    logits, maps = model.forward_with_attention(src, tgt)
    assert max_diff(logits, model(src, tgt)) <= TOL

    real = src != PAD  # (b, s)
    assert len(maps.encoder) == cfg.num_encoder_layers
    assert len(maps.decoder) == len(maps.cross) == cfg.num_decoder_layers
    for w in maps.encoder:
        assert w.shape == (b, h, s, s)
        assert (w >= 0).all()
        assert torch.allclose(w.sum(-1), torch.ones(b, h, s), atol=1e-5)
        assert (w.masked_select(~real[:, None, None, :]) == 0).all(), "padding got weight"
    for w in maps.cross:
        assert w.shape == (b, h, t, s)
        assert (w >= 0).all()
        assert torch.allclose(w.sum(-1), torch.ones(b, h, t), atol=1e-5)
        assert (w.masked_select(~real[:, None, None, :]) == 0).all(), "padding got weight"
        assert (w[..., : min(src_lengths)] > 0).all()
    future = torch.ones(t, t, dtype=torch.bool).triu(1)
    for w in maps.decoder:
        assert w.shape == (b, h, t, t)
        assert (w >= 0).all()
        assert torch.allclose(w.sum(-1), torch.ones(b, h, t), atol=1e-5)
        assert (w[..., future] == 0).all(), "decoder self-attention saw the future"
        assert (w[..., ~future] > 0).all()


# --- dropout ----------------------------------------------------------------------------------


def test_dropout_is_random_in_training_and_off_in_eval(cfg):
    deterministic = build(cfg)
    model = build_transformer(cfg.replace(dropout=0.1))
    model.load_state_dict(deterministic.state_dict())
    gen = torch.Generator().manual_seed(12)
    src = pad_right([words(gen, (n,), cfg.vocab_size) for n in (6, 4)])
    tgt = target_prefix(gen, 2, 5, cfg.target_vocab_size)
    with torch.no_grad():
        model.train()
        assert max_diff(model(src, tgt), model(src, tgt)) > 1e-3
        model.eval()
        first = model(src, tgt)
        assert torch.equal(first, model(src, tgt))
        assert max_diff(first, deterministic(src, tgt)) <= TOL


@pytest.mark.parametrize("kernel", ["sdpa", "eager"])
@pytest.mark.parametrize("knob", ["dropout", "attention_dropout", "activation_dropout"])
@torch.no_grad()
def test_each_dropout_is_wired(knob, kernel):
    base = TransformerConfig(**{**TINY, "kernel": kernel})
    deterministic = build(base)
    model = build_transformer(base.replace(**{knob: 0.2}))
    model.load_state_dict(deterministic.state_dict())
    gen = torch.Generator().manual_seed(13)
    src = words(gen, (2, 6), VOCAB)
    tgt = target_prefix(gen, 2, 5, VOCAB)
    model.train()
    assert max_diff(model(src, tgt), model(src, tgt)) > 1e-3, f"{knob} has no effect"
    model.eval()
    assert max_diff(model(src, tgt), deterministic(src, tgt)) <= TOL
