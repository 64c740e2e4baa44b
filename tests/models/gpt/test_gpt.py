"""The decoder-only model (GPT-2 and LLaMA shapes): config validation, presets and their sizes,
what the builder builds, causality, KV-cache parity, attention maps and kernel equivalence."""

from __future__ import annotations

import math
import re

import pytest
import torch
from tolerance import assert_close_to_scale
from torch import nn

from formers.models import ConfigError
from formers.models.gpt import PRESETS, GPTConfig, build_gpt, preset_config
from formers.nn import (
    Decoder,
    DecoderLayer,
    Embeddings,
    GatedFeedForward,
    LearnedPositionalEmbedding,
    MultiHeadAttention,
    PreNormResidual,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
    feed_forward,
)
from formers.nn.decoder_only import DecoderOnlyLM

GPT2_LIKE = dict(
    vocab_size=50, d_model=32, num_layers=2, num_heads=4, d_ff=64, context_length=24,
    dropout=0.0, attention_dropout=0.0,
)  # fmt: skip
LLAMA_LIKE = dict(
    GPT2_LIKE, num_kv_heads=2, activation="swiglu", norm="rmsnorm", positions="rotary",
    tie_output=False, bias=False,
)  # fmt: skip
SINUSOIDAL = dict(GPT2_LIKE, positions="sinusoidal", activation="gelu", bias=False, num_kv_heads=1)
SHAPES = {"gpt2": GPT2_LIKE, "llama": LLAMA_LIKE, "sinusoidal_mqa": SINUSOIDAL}


@pytest.fixture(params=list(SHAPES))
def model(request) -> DecoderOnlyLM:
    model = build_gpt(GPTConfig(**SHAPES[request.param])).eval()
    # larger weights than the 0.02 init, so that attention is far from uniform and any
    # mistake in masking or positions changes the logits
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(std=0.3)
    # float64: the checks below compare one computation done two ways (cache and recompute,
    # two kernels, ...), exact but for rounding; in float64 that rounding is ~1e-15 of the
    # logits on any CPU, so the bound can be tight (tolerance.FP64) without being fragile
    return model.double()


# --- config ----------------------------------------------------------------------------------


def test_unknown_key_lists_the_valid_keys():
    with pytest.raises(ConfigError, match="unknown GPTConfig key") as info:
        GPTConfig.from_dict({**GPT2_LIKE, "n_layer": 3})
    assert "n_layer" in str(info.value)
    for valid in ("num_layers", "context_length", "num_kv_heads", "tie_output"):
        assert valid in str(info.value)


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        ({"activation": "tanh"}, r"activation='tanh'.*swiglu"),
        ({"norm": "batchnorm"}, r"norm='batchnorm'.*rmsnorm"),
        ({"positions": "alibi"}, r"positions='alibi'.*rotary"),
        ({"kernel": "flash"}, r"kernel='flash'.*eager"),
        ({"d_model": 30}, r"d_model \(30\) must be divisible by num_heads \(4\)"),
        ({"num_kv_heads": 3}, r"multiple of num_kv_heads \(3\)"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
        ({"attention_dropout": -0.1}, r"attention_dropout must be in"),
        ({"context_length": 0}, r"context_length must be a positive int"),
        ({"num_layers": 0}, r"num_layers must be a positive int"),
        ({"vocab_size": "50"}, r"vocab_size must be int"),
        ({"tie_output": "false"}, r"tie_output must be bool"),
        ({"eos_id": 50}, r"eos_id=50 is outside the vocabulary \[0, 50\)"),
        ({"pad_id": -1}, r"pad_id=-1 is outside"),
        ({"rope_base": 0.0}, r"rope_base must be > 0"),
        ({"positions": "rotary", "d_model": 36, "num_heads": 4}, r"even head dim.*9"),
    ],
)
def test_bad_values_are_refused_with_a_clear_message(overrides, pattern):
    with pytest.raises(ConfigError, match=pattern):
        GPTConfig(**{**GPT2_LIKE, **overrides})


def test_config_round_trips_and_replace_validates():
    cfg = GPTConfig(**LLAMA_LIKE, bos_id=1, eos_id=2)
    assert GPTConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.replace(num_layers=3).num_layers == 3
    assert (cfg.kv_heads, cfg.head_dim) == (2, 8)
    with pytest.raises(ConfigError, match="unknown"):
        cfg.replace(layers=3)
    with pytest.raises(ConfigError, match="num_kv_heads"):
        cfg.replace(num_kv_heads=3)


def test_defaults_are_gpt2_small():
    assert GPTConfig(vocab_size=50257) == preset_config("gpt2_small").replace(
        bos_id=None, eos_id=None
    )


# --- presets ---------------------------------------------------------------------------------


def _meta(cfg: GPTConfig) -> DecoderOnlyLM:
    with torch.device("meta"):  # no memory, no init work: counting 124M parameters is instant
        return build_gpt(cfg)


def test_gpt2_small_has_exactly_gpt2s_parameter_count():
    model = _meta(preset_config("gpt2_small"))
    assert model.num_parameters() == 124_439_808
    assert model.generator.weight is model.embed.token.weight
    assert (model.vocab_size, model.context_length) == (50257, 1024)


def test_llama_small_is_llama_shaped():
    model = _meta(preset_config("llama_small", vocab_size=32000))
    names = [n for n, _ in model.named_parameters()]
    assert not [n for n in names if n.endswith("bias")]
    assert model.generator.weight is not model.embed.token.weight
    layer = model.decoder.layers[0]
    assert isinstance(layer.self_residual.norm, nn.RMSNorm)
    assert isinstance(layer.feed_forward, GatedFeedForward)
    assert layer.feed_forward.activation_name == "silu"
    assert isinstance(layer.self_attn.positions, RotaryEmbedding)
    assert layer.self_attn.num_kv_heads < layer.self_attn.num_heads
    assert layer.self_attn.k_proj.out_features == 4 * 64
    assert model.embed.positions is None


@pytest.mark.parametrize("name", ["nanogpt_char", "nanogpt_char_cpu"])
def test_nanogpt_presets(name):
    model = _meta(preset_config(name, vocab_size=65))
    cfg = model.config
    assert (cfg.activation, cfg.norm, cfg.positions, cfg.bias) == (
        "gelu",
        "layernorm",
        "learned",
        False,
    )
    assert model.generator.weight is model.embed.token.weight
    assert not [n for n, _ in model.named_parameters() if n.endswith("bias")]
    expected = {"nanogpt_char": (6, 384, 256, 0.2), "nanogpt_char_cpu": (4, 128, 64, 0.0)}[name]
    assert (cfg.num_layers, cfg.d_model, cfg.context_length, cfg.dropout) == expected


def test_preset_errors():
    with pytest.raises(ConfigError, match=r"unknown preset 'gpt3'.*gpt2_small"):
        preset_config("gpt3")
    with pytest.raises(TypeError, match="vocab_size"):
        preset_config("llama_small")
    assert set(PRESETS) >= {"gpt2_small", "llama_small", "nanogpt_char", "nanogpt_char_cpu"}


# --- builder ---------------------------------------------------------------------------------


def test_builder_builds_what_the_config_names():
    gpt2 = build_gpt(GPTConfig(**GPT2_LIKE))
    layer = gpt2.decoder.layers[0]
    assert layer.cross_attn is None and isinstance(layer.self_residual, PreNormResidual)
    assert isinstance(layer.self_residual.norm, nn.LayerNorm)
    assert layer.self_residual.norm.bias is not None
    assert isinstance(gpt2.embed.positions, LearnedPositionalEmbedding)
    assert isinstance(gpt2.decoder.final_norm, nn.LayerNorm)
    assert gpt2.embed.scale == 1.0  # GPT does not scale embeddings by sqrt(d_model)
    sinusoidal = build_gpt(GPTConfig(**SINUSOIDAL))
    assert isinstance(sinusoidal.embed.positions, SinusoidalPositionalEncoding)
    assert sinusoidal.decoder.layers[0].self_residual.norm.bias is None  # bias=False


def test_gpt2_initialization():
    layers = 8
    model = build_gpt(
        GPTConfig(vocab_size=512, d_model=256, d_ff=1024, num_heads=4, num_layers=layers)
    )
    residual = 0.02 / math.sqrt(2 * layers)
    for layer in model.decoder.layers:
        assert layer.self_attn.out_proj.weight.std().item() == pytest.approx(residual, rel=0.05)
        assert layer.feed_forward.down.weight.std().item() == pytest.approx(residual, rel=0.05)
        assert layer.self_attn.q_proj.weight.std().item() == pytest.approx(0.02, rel=0.05)
        assert layer.feed_forward.up.weight.std().item() == pytest.approx(0.02, rel=0.05)
        assert torch.count_nonzero(layer.self_attn.q_proj.bias) == 0
        assert torch.equal(layer.self_residual.norm.weight, torch.ones(256))
    assert model.embed.token.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert model.embed.positions.embedding.weight.std().item() == pytest.approx(0.02, rel=0.05)


def test_a_decoder_with_cross_attention_is_refused():
    d = 16
    layer = DecoderLayer(
        MultiHeadAttention(d, 2), MultiHeadAttention(d, 2), feed_forward("gelu", d, 32),
        PreNormResidual(nn.LayerNorm(d)), PreNormResidual(nn.LayerNorm(d)),
        PreNormResidual(nn.LayerNorm(d)),
    )  # fmt: skip
    embed = Embeddings(nn.Embedding(10, d), None, scale=1.0)
    with pytest.raises(ValueError, match="without cross-attention"):
        DecoderOnlyLM(
            embed, Decoder([layer]), nn.Linear(d, 10), context_length=8, pad_id=None,
            bos_id=None, eos_id=None,
        )  # fmt: skip


# --- behaviour, for every shape ----------------------------------------------------------------


def test_shapes_and_backward(model):
    model.train()
    tokens = torch.randint(0, 50, (2, 10))
    logits = model(tokens)
    assert logits.shape == (2, 10, 50)
    logits.logsumexp(-1).mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing


def test_causality(model):
    tokens = torch.randint(0, 50, (2, 12))
    changed = tokens.clone()
    changed[:, 7] = (changed[:, 7] + 1) % 50
    with torch.no_grad():
        a, b = model(tokens), model(changed)
    assert_close_to_scale(a[:, :7], b[:, :7])
    assert (a[:, 7:] - b[:, 7:]).abs().max() > 1e-3  # the change is visible from position 7 on


@pytest.mark.parametrize("steps", [[1] * 12, [5, 1, 3, 1, 2]])
def test_cache_matches_recompute(model, steps):
    tokens = torch.randint(0, 50, (3, sum(steps)))
    with torch.no_grad():
        full = model(tokens)
        cache, parts, start = model.new_cache(), [], 0
        for size in steps:
            parts.append(model.decode(tokens[:, start : start + size], cache))
            start += size
    assert cache.length == tokens.size(1)
    assert_close_to_scale(torch.cat(parts, dim=1), full)


def test_attention_weights_are_causal_distributions(model):
    tokens = torch.randint(0, 50, (2, 9))
    with torch.no_grad():
        logits, weights = model.forward_with_attention(tokens)
        plain = model(tokens)
    assert_close_to_scale(logits, plain)
    assert len(weights) == len(model.decoder.layers)
    for w in weights:
        assert w.shape == (2, 4, 9, 9)
        torch.testing.assert_close(w.sum(-1), torch.ones(2, 4, 9, dtype=w.dtype), atol=1e-6, rtol=0)
        assert w.triu(diagonal=1).abs().max() == 0  # no query attends to a later key


def test_sdpa_and_eager_kernels_agree(model):
    eager = build_gpt(model.config.replace(kernel="eager")).double().eval()
    eager.load_state_dict(model.state_dict())
    tokens = torch.randint(0, 50, (2, 11))
    with torch.no_grad():
        assert_close_to_scale(eager(tokens), model(tokens))


def test_masked_keys_are_never_attended_to(model):
    tokens = torch.randint(0, 50, (2, 10))
    changed = tokens.clone()
    changed[:, 4] = (changed[:, 4] + 1) % 50
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[:, 4] = False  # e.g. padding
    with torch.no_grad():
        a, b = model(tokens, mask), model(changed, mask)
        unmasked = model(changed)
    later = [5, 6, 7, 8, 9]
    assert_close_to_scale(a[:, later], b[:, later])
    assert (unmasked[:, later] - b[:, later]).abs().max() > 1e-3  # without the mask it shows


def test_inputs_beyond_the_context_are_refused(model):
    with pytest.raises(ValueError, match=re.escape("context_length is 24")):
        model(torch.zeros(1, 25, dtype=torch.long))
    cache = model.new_cache()
    with torch.no_grad():
        model.decode(torch.zeros(1, 24, dtype=torch.long), cache)
    with pytest.raises(ValueError, match="reaches position 25"):
        model.decode(torch.zeros(1, 1, dtype=torch.long), cache)


def test_num_parameters_counts_tied_weights_once():
    tied = build_gpt(GPTConfig(**GPT2_LIKE))
    untied = build_gpt(GPTConfig(**{**GPT2_LIKE, "tie_output": False}))
    assert untied.num_parameters() - tied.num_parameters() == 50 * 32
    assert tied.config == GPTConfig(**GPT2_LIKE)


@pytest.mark.parametrize("side", ["left", "right"])
def test_a_batch_of_padded_prompts_decodes_with_a_cache_as_each_prompt_alone(model, side):
    """Prompts of 3, 6 and 5 tokens padded to 6 on one side, fed at once with their mask, then
    four tokens per row, one step at a time: every row's logits equal those of the prompt decoded
    alone (the cache keeps the padding and each row's positions; learned, sinusoidal and rotary
    positions alike)."""
    lengths, pad = [3, 6, 5], 0
    prompts = [torch.randint(1, 50, (n,)) for n in lengths]
    steps = torch.randint(1, 50, (3, 4))
    batch = torch.full((3, 6), pad)
    mask = torch.zeros(3, 6, dtype=torch.bool)
    for row, prompt in enumerate(prompts):
        where = slice(6 - len(prompt), 6) if side == "left" else slice(0, len(prompt))
        batch[row, where], mask[row, where] = prompt, True
    with torch.no_grad():
        cache = model.new_cache()
        first = model.decode(batch, cache, mask)
        last = first[torch.arange(3), torch.tensor(lengths) - 1 if side == "right" else -1]
        together = [last] + [model.decode(steps[:, i : i + 1], cache)[:, 0] for i in range(4)]
        for row, prompt in enumerate(prompts):
            alone_cache = model.new_cache()
            alone = [model.decode(prompt[None], alone_cache)[0, -1]]
            alone += [model.decode(steps[row : row + 1, i : i + 1], alone_cache)[0, 0]
                      for i in range(4)]  # fmt: skip
            for got, expected in zip(together, alone, strict=True):
                assert_close_to_scale(got[row], expected)
        # and the whole padded batch without a cache: each row's real tokens as alone
        full = model(batch, mask)
        for row, prompt in enumerate(prompts):
            assert_close_to_scale(full[row][mask[row]], model(prompt[None])[0])
