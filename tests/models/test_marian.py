"""Hugging Face Marian <-> our encoder-decoder, checked against ``transformers`` itself.

Tiny ``MarianMTModel`` s are built offline under a fixed seed. Logits must agree within 1e-4 on
a padded batch, and decoding must return exactly ``generate``'s tokens: greedy, and beam search
for two length penalties and the three ``early_stopping`` rules.

Random models tend to repeat one token forever, which makes decoding parity vacuous; the decoding
model therefore has an untied output projection with a large spread (peaked, varied next-token
distributions) and a biased EOS (outputs of many lengths, so that the length penalty and the
stopping rule change the results, which ``test_the_hugging_face_options_matter`` checks).

Shapes: b batch, s source length, t target length, V vocabulary.
"""

from __future__ import annotations

import json

import pytest
import torch

transformers = pytest.importorskip("transformers", reason="needs pip install 'formers[hf]'")

from formers.decoding import beam_search, greedy_search  # noqa: E402
from formers.models import TransformerConfig, build_transformer  # noqa: E402
from formers.models.hf_common import ConversionError  # noqa: E402
from formers.models.transformer.convert import (  # noqa: E402
    config_from_hf,
    load_hf,
    save_hf,
    state_dict_from_hf,
    state_dict_to_hf,
    to_hf,
)

VOCAB, PAD, EOS = 100, 99, 0  # Marian's layout: EOS first, padding (= decoder start) last
NEW_TOKENS = 16
TOL = 1e-4

SMALL = dict(
    vocab_size=VOCAB,
    d_model=64,
    encoder_layers=2,
    decoder_layers=2,
    encoder_attention_heads=4,
    decoder_attention_heads=4,
    encoder_ffn_dim=128,
    decoder_ffn_dim=128,
    max_position_embeddings=64,
    pad_token_id=PAD,
    eos_token_id=EOS,
    decoder_start_token_id=PAD,
    forced_eos_token_id=EOS,
    scale_embedding=True,
    activation_function="swish",
)

VARIANTS = {
    "shared-tied": dict(),
    "untied": dict(tie_word_embeddings=False),
    "separate-vocabularies": dict(
        share_encoder_decoder_embeddings=False, decoder_vocab_size=120, activation_function="gelu"
    ),
}


def marian(seed: int = 0, **overrides) -> transformers.MarianMTModel:
    """A random ``MarianMTModel`` with a random (nonzero) ``final_logits_bias``."""
    torch.manual_seed(seed)
    model = transformers.MarianMTModel(transformers.MarianConfig(**{**SMALL, **overrides}))
    with torch.no_grad():
        model.final_logits_bias.normal_(0.0, 0.5)
    return model.eval()


def decoding_marian() -> transformers.MarianMTModel:
    """Peaked, varied next-token distributions and outputs of many lengths (see the docstring)."""
    model = marian(seed=1, tie_word_embeddings=False, init_std=0.1)
    with torch.no_grad():
        for embedding in (model.model.encoder.embed_tokens, model.model.decoder.embed_tokens):
            embedding.weight.normal_(0.0, 0.15)
        model.lm_head.weight.normal_(0.0, 0.5)
        model.final_logits_bias[0, EOS] += 4.0
    return model


def sources(n: int = 8, length: int = 9, seed: int = 1) -> torch.Tensor:
    """``(n, s)`` right-padded sources of lengths 1..s (ids between EOS and PAD)."""
    gen = torch.Generator().manual_seed(seed)
    src = torch.randint(EOS + 1, PAD, (n, length), generator=gen)
    lengths = torch.tensor([9, 5, 7, 3, 8, 1, 4, 6][:n]).clamp(max=length)
    src[torch.arange(length)[None, :] >= lengths[:, None]] = PAD
    return src


def targets(src: torch.Tensor, length: int = 7, vocab: int = VOCAB) -> torch.Tensor:
    gen = torch.Generator().manual_seed(2)
    tgt = torch.randint(EOS + 1, min(vocab, PAD), (src.size(0), length), generator=gen)
    tgt[:, 0] = PAD  # the decoder start token
    return tgt


@torch.no_grad()
def hf_logits(hf, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
    return hf(input_ids=src, attention_mask=src != PAD, decoder_input_ids=tgt).logits


@torch.no_grad()
def hf_generate(hf, src: torch.Tensor, **options) -> torch.Tensor:
    """``generate`` without the decoder start token: ``(b, L)``, padded with PAD."""
    out = hf.generate(
        input_ids=src,
        attention_mask=src != PAD,
        do_sample=False,
        max_new_tokens=NEW_TOKENS,
        bad_words_ids=[[PAD]],  # as in the OPUS-MT checkpoints' generation configs
        **options,
    )
    return out[:, 1:]


def hf_beam(hf, src: torch.Tensor, alpha: float, early_stopping: bool | str) -> torch.Tensor:
    return hf_generate(hf, src, num_beams=4, length_penalty=alpha, early_stopping=early_stopping)


def our_beam(model, src: torch.Tensor, alpha: float, early_stopping: bool | str, **options):
    return beam_search(
        model,
        src,
        beam_size=4,
        max_len_a=0.0,
        max_len_b=NEW_TOKENS,
        length_penalty=lambda n: n**alpha,
        early_stopping=early_stopping,
        **{"forced_eos_log_prob": 0.0, **options},
    ).tokens


# --- configs ----------------------------------------------------------------------------------


def test_config_from_hf_maps_every_marian_option():
    cfg = config_from_hf(transformers.MarianConfig(**SMALL))
    assert cfg == TransformerConfig(
        vocab_size=VOCAB,
        d_model=64,
        d_ff=128,
        num_heads=4,
        num_encoder_layers=2,
        num_decoder_layers=2,
        dropout=0.1,
        activation="silu",
        positions="sinusoidal_halves",
        max_positions=64,
        share_embeddings=True,
        tie_output=True,
        output_bias=True,
        scale_embeddings=True,
        pad_id=PAD,
        bos_id=PAD,
        eos_id=EOS,
    )
    separate = config_from_hf(
        {**SMALL, **VARIANTS["separate-vocabularies"], "model_type": "marian"}
    )
    assert (separate.share_embeddings, separate.target_vocab_size) == (False, 120)
    assert separate.activation == "gelu"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(model_type="bart"), "model_type 'bart' is not supported.*supported: marian"),
        (dict(decoder_attention_heads=8), "encoder_attention_heads=4 differs"),
        (dict(decoder_ffn_dim=64), "encoder_ffn_dim=128 differs"),
        (dict(activation_function="tanh"), "activation_function 'tanh' is not supported"),
        (dict(normalize_before=True), "normalize_before=true .pre-norm"),
        (dict(eos_token_id=[0, 1]), "several eos_token_id"),
        (dict(eos_token_id=PAD), "cannot be expressed: eos_id must differ"),
    ],
)
def test_config_from_hf_refuses_what_we_cannot_express(change, message):
    with pytest.raises(ConversionError, match=message):
        config_from_hf({**SMALL, "model_type": "marian", **change})


# --- logits -----------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", list(VARIANTS.values()), ids=list(VARIANTS))
def test_logits_match_on_a_padded_batch(variant):
    hf = marian(**variant)
    ours = load_hf(hf)
    src = sources()
    tgt = targets(src)
    expected = hf_logits(hf, src, tgt)
    with torch.no_grad():
        got = ours(src, tgt)
    assert got.shape == expected.shape
    assert (got - expected).abs().max() <= TOL
    assert expected.std() > 0.1  # not a trivially flat output


def test_logits_match_from_a_save_pretrained_directory(tmp_path):
    hf = marian()
    hf.save_pretrained(tmp_path)
    ours = load_hf(tmp_path)
    src = sources()
    tgt = targets(src)
    with torch.no_grad():
        assert (ours(src, tgt) - hf_logits(hf, src, tgt)).abs().max() <= TOL
    # incremental decoding (the KV cache path used by the searches) agrees too
    state = ours.init_decoding(src)
    expected = hf_logits(hf, src, tgt)
    with torch.no_grad():
        for i in range(tgt.size(1)):
            step = ours.decode_step(tgt[:, i : i + 1], state)
            assert (step - expected[:, i]).abs().max() <= TOL, i


# --- decoding ---------------------------------------------------------------------------------


def test_greedy_matches_generate():
    hf = decoding_marian()
    ours = load_hf(hf)
    src = sources()
    expected = hf_generate(hf, src, num_beams=1)
    got = greedy_search(ours, src, max_len_a=0.0, max_len_b=NEW_TOKENS)
    assert torch.equal(got.tokens, expected)
    assert len(set(got.lengths.tolist())) > 2  # outputs of several lengths


@pytest.mark.parametrize("early_stopping", [True, False, "never"])
@pytest.mark.parametrize("alpha", [0.6, 1.0])
def test_beam_search_matches_generate(alpha, early_stopping):
    hf = decoding_marian()
    ours = load_hf(hf)
    src = sources()
    expected = hf_beam(hf, src, alpha, early_stopping)
    assert torch.equal(our_beam(ours, src, alpha, early_stopping), expected)


def test_the_hugging_face_options_matter():
    """The parity above is not vacuous: with alpha = 1 each stopping rule gives outputs that the
    other two do not, and so does scoring the forced EOS by the model instead of by 0."""
    hf = decoding_marian()
    ours = load_hf(hf)
    src = sources()
    rules = [True, False, "never"]
    for early_stopping in rules:
        expected = hf_beam(hf, src, 1.0, early_stopping)
        for other in rules:
            same = torch.equal(our_beam(ours, src, 1.0, other), expected)
            assert same == (other == early_stopping), (early_stopping, other)
        model_eos = our_beam(ours, src, 1.0, early_stopping, forced_eos_log_prob=None)
        assert not torch.equal(model_eos, expected)


# --- export and round trips -------------------------------------------------------------------


@pytest.mark.parametrize("variant", list(VARIANTS.values()), ids=list(VARIANTS))
def test_round_trip_ours_to_hf_to_ours(variant):
    ours = load_hf(marian(**variant))
    hf = to_hf(ours)
    back = load_hf(hf)
    assert back.config == ours.config
    mine, theirs = ours.state_dict(), back.state_dict()
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[name], theirs[name]) for name in mine)
    src = sources()
    tgt = targets(src)
    with torch.no_grad():
        assert (hf_logits(hf, src, tgt) - ours(src, tgt)).abs().max() <= TOL


def test_exported_model_decodes_like_ours(tmp_path):
    ours = load_hf(decoding_marian())
    save_hf(ours, tmp_path)
    reloaded = transformers.MarianMTModel.from_pretrained(tmp_path).eval()
    assert reloaded.generation_config.bad_words_ids == [[PAD]]
    src = sources()
    for alpha, early_stopping in [(0.6, True), (1.0, False)]:
        expected = hf_beam(reloaded, src, alpha, early_stopping)
        assert torch.equal(our_beam(ours, src, alpha, early_stopping), expected)
    again = load_hf(tmp_path)
    assert torch.equal(our_beam(again, src, 1.0, False), our_beam(ours, src, 1.0, False))


def test_a_model_built_here_exports_when_marian_can_express_it():
    cfg = TransformerConfig(
        vocab_size=50, d_model=32, d_ff=64, num_heads=4, num_encoder_layers=1,
        num_decoder_layers=2, dropout=0.0, positions="sinusoidal_halves", output_bias=False,
        activation="gelu_tanh", pad_id=0, bos_id=0, eos_id=1,
    )  # fmt: skip
    ours = build_transformer(cfg).eval()
    hf = to_hf(ours)
    assert torch.equal(hf.final_logits_bias, torch.zeros(1, 50))
    src = torch.tensor([[5, 6, 7, 1], [8, 9, 1, 0]])
    tgt = torch.tensor([[0, 4, 5], [0, 6, 7]])
    with torch.no_grad():
        expected = hf(input_ids=src, attention_mask=src != 0, decoder_input_ids=tgt).logits
        assert (ours(src, tgt) - expected).abs().max() <= TOL
    assert load_hf(hf).config == cfg.replace(output_bias=True)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(norm_first=True), "norm_first=True"),
        (dict(positions="sinusoidal"), "positions='sinusoidal'"),
        (dict(activation="swiglu", num_kv_heads=2), "num_kv_heads=2.*activation='swiglu'"),
        (dict(bias=False, norm="rmsnorm"), "norm='rmsnorm'.*bias=False"),
    ],
)
def test_export_refuses_what_marian_cannot_express(change, message):
    cfg = TransformerConfig(
        vocab_size=50, d_model=32, d_ff=64, num_heads=4, num_encoder_layers=1,
        num_decoder_layers=1, positions="sinusoidal_halves",
    ).replace(**change)  # fmt: skip
    with pytest.raises(ConversionError, match=message):
        to_hf(build_transformer(cfg))


# --- errors -----------------------------------------------------------------------------------


def test_directory_of_another_model_type_is_refused(tmp_path):
    marian().save_pretrained(tmp_path)
    config_file = tmp_path / "config.json"
    values = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**values, "model_type": "t5"}))
    with pytest.raises(ConversionError, match="model_type 't5' is not supported.*marian"):
        load_hf(tmp_path)


def test_missing_tensor_is_named():
    hf = marian()
    state = hf.state_dict()
    del state["model.decoder.layers.1.encoder_attn.k_proj.weight"]
    cfg = config_from_hf(hf.config)
    with pytest.raises(ConversionError, match=r"missing tensors \[decoder.layers.1.encoder_attn"):
        state_dict_from_hf(state, cfg, "test")


def test_wrong_shape_is_named():
    hf = marian()
    state = dict(hf.state_dict())
    state["model.encoder.layers.0.fc1.weight"] = torch.zeros(64, 64)
    cfg = config_from_hf(hf.config)
    with pytest.raises(ConversionError, match=r"encoder.layers.0.fc1.weight \(64, 64\) \(expected"):
        state_dict_from_hf(state, cfg, "test")


def test_unexpected_and_untied_tensors_are_named():
    hf = marian()
    cfg = config_from_hf(hf.config)
    state = {**hf.state_dict(), "model.encoder.layers.7.fc1.weight": torch.zeros(1)}
    with pytest.raises(ConversionError, match=r"unexpected tensors \[encoder.layers.7.fc1"):
        state_dict_from_hf(state, cfg, "test")
    state = dict(hf.state_dict())
    state["lm_head.weight"] = state["lm_head.weight"] + 1.0
    with pytest.raises(ConversionError, match="lm_head.weight differs from shared.weight"):
        state_dict_from_hf(state, cfg, "test")


def test_positions_that_are_not_the_marian_sinusoid_are_refused():
    hf = marian()
    state = dict(hf.state_dict())
    table = state["model.encoder.embed_positions.weight"]
    state["model.encoder.embed_positions.weight"] = table[:, torch.randperm(64)]
    with pytest.raises(ConversionError, match="not Marian's .sin | cos. sinusoid"):
        state_dict_from_hf(state, config_from_hf(hf.config), "test")


def test_state_dict_to_hf_uses_hugging_face_names():
    hf = marian()
    state = state_dict_to_hf(load_hf(hf))
    theirs = {n for n in hf.state_dict() if not n.endswith("embed_positions.weight")}
    assert set(state) == theirs
