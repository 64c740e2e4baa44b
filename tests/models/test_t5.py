"""T5 against Hugging Face's ``T5ForConditionalGeneration`` built from tiny configs with random
weights: logits, greedy and beam outputs of ``generate``, exports and round trips, and what the
converter refuses. T5 1.0 (ReLU, tied embeddings, output scaled by d_model^-0.5) and 1.1
(gated-GELU, its own lm_head)."""

from __future__ import annotations

import pytest
import torch
from tolerance import assert_close_to_scale

from formers.decoding import beam_search, greedy_search
from formers.models.hf_common import ConversionError

transformers = pytest.importorskip("transformers", reason="needs pip install 'formers[hf]'")

from formers.models.t5 import PRESETS, build_t5, preset_config  # noqa: E402
from formers.models.t5.convert import config_from_hf, load_hf, save_hf, to_hf  # noqa: E402

PAD, EOS, VOCAB, NEW_TOKENS = 0, 1, 60, 12
# (num_decoder_layers == num_layers: generate's cache in transformers 5 sizes itself by num_layers)
TINY = dict(vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_decoder_layers=2,
            num_heads=4, relative_attention_num_buckets=8, relative_attention_max_distance=16,
            dropout_rate=0.0, pad_token_id=PAD, eos_token_id=EOS, decoder_start_token_id=PAD,
            attn_implementation="eager")  # fmt: skip
VARIANTS = {
    "t5-1.0": dict(feed_forward_proj="relu", tie_word_embeddings=True),
    "t5-1.1": dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False),
}


def hf_t5(variant: str, seed: int = 0) -> transformers.T5ForConditionalGeneration:
    torch.manual_seed(seed)
    config = transformers.T5Config(**TINY, **VARIANTS[variant])
    model = transformers.T5ForConditionalGeneration(config)
    with torch.no_grad():  # outputs that vary (not one token repeated) and of several lengths
        for name, p in model.named_parameters():  # the sublayers outweigh the tied embedding
            if name.endswith((".o.weight", ".wo.weight")):
                p.mul_(10.0)
        for block in (*model.encoder.block, *model.decoder.block):
            attn = block.layer[0].SelfAttention
            if attn.has_relative_attention_bias:
                attn.relative_attention_bias.weight.normal_(std=1.0)
        # (transformers 5 ties lm_head to the embedding in T5 1.1 too)
        model.lm_head.weight[EOS] += {"t5-1.0": 2.0, "t5-1.1": 4.0}[variant]
    return model.eval()


def sources(n: int = 6, length: int = 20) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    src = torch.randint(EOS + 1, VOCAB, (n, length), generator=gen)
    lengths = torch.tensor([20, 5, 17, 3, 11, 1][:n])
    src[torch.arange(length)[None, :] >= lengths[:, None]] = PAD
    return src


@torch.no_grad()
def hf_generate(hf, src, **options) -> torch.Tensor:
    out = hf.generate(input_ids=src, attention_mask=src != PAD, do_sample=False,
                      max_new_tokens=NEW_TOKENS, bad_words_ids=[[PAD]],
                      forced_eos_token_id=EOS, **options)  # fmt: skip
    # (as our searches: never the padding token, and EOS at the length limit)
    return until_eos(out[:, 1:])  # without the decoder start token


def until_eos(tokens: torch.Tensor) -> torch.Tensor:
    """Padding after each row's first EOS (beam search's outputs end with EOS then pad)."""
    after = (tokens == EOS).long().cumsum(dim=1) - (tokens == EOS).long() > 0
    return tokens.masked_fill(after, PAD)


def test_presets_have_the_published_sizes():
    sizes = {name: build_t5(preset_config(name, vocab_size=32128)).num_parameters()
             for name in ("t5_small", "t5_v1_1_small")}  # fmt: skip
    assert sizes == {"t5_small": 60_506_624, "t5_v1_1_small": 76_961_152}  # Hugging Face's counts
    assert set(PRESETS) >= {"t5_small", "t5_v1_1_small", "t5_tiny"}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_logits_equal_hugging_faces_on_a_padded_batch(variant):
    hf = hf_t5(variant)
    ours = load_hf(hf)
    assert ours.config.feed_forward == VARIANTS[variant]["feed_forward_proj"]
    assert ours.config.scale_decoder_output == (variant == "t5-1.0")
    src = sources()
    tgt = torch.randint(EOS + 1, VOCAB, (6, 9), generator=torch.Generator().manual_seed(2))
    tgt[:, 0] = PAD  # the decoder start token
    with torch.no_grad():
        expected = hf(input_ids=src, attention_mask=src != PAD, decoder_input_ids=tgt).logits
        assert_close_to_scale(ours(src, tgt), expected, rel=1e-5)
        assert (expected[:, -1].argmax(-1) != expected[:, -2].argmax(-1)).any()


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_greedy_and_beam_outputs_equal_generate(variant):
    hf = hf_t5(variant)
    ours = load_hf(hf)
    src = sources()
    greedy = greedy_search(ours, src, max_len_a=0.0, max_len_b=NEW_TOKENS)
    assert torch.equal(greedy.tokens, hf_generate(hf, src, num_beams=1))
    assert len(set(greedy.lengths.tolist())) > 1  # outputs of several lengths
    for alpha, early_stopping in ((1.0, True), (0.6, False)):
        expected = hf_generate(hf, src, num_beams=4, length_penalty=alpha,
                               early_stopping=early_stopping)  # fmt: skip
        got = beam_search(ours, src, beam_size=4, max_len_a=0.0, max_len_b=NEW_TOKENS,
                          length_penalty=lambda n, a=alpha: n**a, early_stopping=early_stopping,
                          forced_eos_log_prob=0.0).tokens  # fmt: skip
        assert torch.equal(got, expected), (alpha, early_stopping)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_round_trip_and_export_are_exact(variant, tmp_path):
    ours = load_hf(hf_t5(variant))
    back = load_hf(to_hf(ours))
    assert back.config == ours.config
    mine, theirs = ours.state_dict(), back.state_dict()
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    save_hf(ours, tmp_path)
    reloaded = transformers.T5ForConditionalGeneration.from_pretrained(tmp_path).eval()
    src = sources()
    assert torch.equal(hf_generate(reloaded, src, num_beams=1),
                       greedy_search(ours, src, max_len_a=0.0, max_len_b=NEW_TOKENS).tokens)
    from_dir = load_hf(tmp_path)
    assert all(torch.equal(from_dir.state_dict()[k], mine[k]) for k in mine)


def test_one_relative_bias_a_stack_shared_by_its_layers():
    model = load_hf(hf_t5("t5-1.0"))
    for stack in (model.encoder, model.decoder):
        schemes = {id(layer.self_attn.positions) for layer in stack.layers}
        assert len(schemes) == 1
    assert model.encoder.layers[0].self_attn.positions.bidirectional
    assert not model.decoder.layers[0].self_attn.positions.bidirectional
    assert all(layer.cross_attn.positions is None for layer in model.decoder.layers)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(feed_forward_proj="gated-silu"), "feed_forward_proj='gated-silu' is not supported"),
        (dict(decoder_start_token_id=5), "decoder_start_token_id=5 differs from pad_token_id"),
        (dict(is_encoder_decoder=False), "encoder-only T5"),
        (dict(model_type="mt5"), "model_type 'mt5' is not T5"),
    ],
)
def test_options_we_cannot_express_are_named(change, message):
    values = {**TINY, "model_type": "t5", "feed_forward_proj": "relu", **change}
    with pytest.raises(ConversionError, match=message):
        config_from_hf(values)
