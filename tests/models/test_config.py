"""Validation of :class:`TransformerConfig`: bad values fail early with a message that says what
was wrong and what is expected; good ones round-trip through dicts."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from formers.models import ConfigError, TransformerConfig, build_transformer, transformer_tiny
from formers.models.transformer import PRESETS, preset_config

TINY = dict(vocab_size=37, d_model=32, d_ff=64, num_heads=4, num_encoder_layers=2)


def make(**overrides) -> TransformerConfig:
    return TransformerConfig(**{**TINY, **overrides})


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


def test_defaults_are_the_paper_base_model():
    cfg = TransformerConfig(vocab_size=37000)
    assert (cfg.d_model, cfg.d_ff, cfg.num_heads, cfg.dropout) == (512, 2048, 8, 0.1)
    assert (cfg.num_encoder_layers, cfg.num_decoder_layers) == (6, 6)
    assert (cfg.norm_first, cfg.positions, cfg.activation) == (False, "sinusoidal", "relu")
    assert cfg.share_embeddings and cfg.tie_output and cfg.scale_embeddings
    assert (cfg.target_vocab_size, cfg.kv_heads, cfg.head_dim) == (37000, 8, 64)


def test_derived_properties():
    cfg = make(tgt_vocab_size=50, share_embeddings=False, num_kv_heads=2)
    assert (cfg.target_vocab_size, cfg.kv_heads, cfg.head_dim) == (50, 2, 8)


def test_d_model_not_divisible_by_num_heads_names_both_numbers():
    with pytest.raises(ConfigError, match="divisible") as info:
        make(d_model=30, num_heads=4)
    assert "30" in str(info.value) and "4" in str(info.value)


@pytest.mark.parametrize(
    ("field", "value", "valid"),
    [
        ("activation", "tanh", ["relu", "gelu", "swiglu", "geglu"]),
        ("norm", "batchnorm", ["layernorm", "rmsnorm"]),
        ("positions", "alibi", ["sinusoidal", "learned", "rotary"]),
        ("kernel", "flash", ["sdpa", "eager"]),
    ],
)
def test_unknown_choice_names_the_valid_ones(field, value, valid):
    with pytest.raises(ConfigError) as info:
        make(**{field: value})
    message = str(info.value)
    assert field in message and value in message
    for choice in valid:
        assert choice in message, f"{choice!r} missing from: {message}"


def test_num_heads_must_be_a_multiple_of_num_kv_heads():
    with pytest.raises(ConfigError, match=r"num_heads \(4\).*num_kv_heads \(3\)"):
        make(num_kv_heads=3)
    with pytest.raises(ConfigError, match="num_kv_heads"):
        make(num_kv_heads=0)
    with pytest.raises(ConfigError, match="num_kv_heads"):
        make(num_kv_heads=8)  # more key/value heads than query heads
    for kv in (1, 2, 4):
        assert make(num_kv_heads=kv).kv_heads == kv


@pytest.mark.parametrize("field", ["dropout", "attention_dropout", "activation_dropout"])
@pytest.mark.parametrize("value", [-0.1, 1.0, 1.5])
def test_dropout_out_of_range(field, value):
    with pytest.raises(ConfigError, match=rf"{field} must be in \[0, 1\)"):
        make(**{field: value})


def test_dropout_bounds_that_are_valid():
    assert make(dropout=0.0, attention_dropout=0.0, activation_dropout=0.999).dropout == 0.0


def test_share_embeddings_needs_one_vocabulary():
    with pytest.raises(ConfigError, match="share_embeddings") as info:
        make(tgt_vocab_size=50)
    assert "37" in str(info.value) and "50" in str(info.value)
    assert make(tgt_vocab_size=37).target_vocab_size == 37  # the same size is fine
    assert make(tgt_vocab_size=50, share_embeddings=False).target_vocab_size == 50


@pytest.mark.parametrize("name", ["pad_id", "bos_id", "eos_id"])
@pytest.mark.parametrize("value", [-1, 37])
def test_special_ids_must_be_in_the_vocabulary(name, value):
    with pytest.raises(ConfigError, match=rf"{name}={value} is outside the vocabulary"):
        make(**{name: value, **({"pad_id": 5} if name != "pad_id" else {})})


def test_special_ids_must_fit_the_smaller_vocabulary():
    with pytest.raises(ConfigError, match="eos_id=20"):
        make(tgt_vocab_size=20, share_embeddings=False, eos_id=20)


def test_eos_must_differ_from_pad_and_bos():
    with pytest.raises(ConfigError, match="must differ"):
        make(eos_id=0)
    with pytest.raises(ConfigError, match="must differ"):
        make(bos_id=2)


def test_bos_may_be_the_padding_token():
    """Marian starts decoding from the padding token."""
    cfg = make(pad_id=1, bos_id=1, eos_id=0)
    assert cfg.bos_id == cfg.pad_id == 1


@pytest.mark.parametrize("field", ["num_encoder_layers", "num_decoder_layers"])
@pytest.mark.parametrize("value", [-1, 0])
def test_layer_counts_must_be_positive(field, value):
    with pytest.raises(ConfigError, match=rf"{field} must be >= 1, got {value}"):
        make(**{field: value})


@pytest.mark.parametrize("field", ["vocab_size", "d_model", "d_ff", "num_heads", "max_positions"])
def test_sizes_must_be_positive_ints(field):
    for bad in (0, -3, 2.5):
        with pytest.raises(ConfigError, match=field):
            make(**{field: bad})


def test_sinusoidal_needs_an_even_d_model():
    with pytest.raises(ConfigError, match="even d_model"):
        make(d_model=33, num_heads=3)
    assert make(d_model=33, num_heads=3, positions="learned").d_model == 33


def test_rotary_needs_an_even_head_dim():
    with pytest.raises(ConfigError, match="even head dim"):
        make(d_model=36, num_heads=4, positions="rotary")  # head dim 9
    assert make(d_model=36, num_heads=2, positions="rotary").head_dim == 18


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tgt_vocab_size", 0),  # blamed on pad_id today: "pad_id=0 is outside [0, 0)"
        ("norm_eps", -1e-5),
        ("norm_eps", "1e-5"),  # what YAML 1.1 (PyYAML) reads from `norm_eps: 1e-5`
        ("rope_base", 0.0),
        ("dropout", "0.1"),  # a TypeError from inside the range check today
        ("norm_first", "false"),  # a truthy string would silently select pre-norm
    ],
)
def test_every_field_is_validated_with_a_message_naming_it(field, value):
    extra = {"share_embeddings": False} if field == "tgt_vocab_size" else {}
    with pytest.raises(ConfigError, match=field):
        make(**{field: value, **extra})


def test_config_is_frozen():
    cfg = make()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.d_model = 64  # type: ignore[misc]


def test_from_dict_unknown_key_lists_the_valid_keys():
    with pytest.raises(ConfigError) as info:
        TransformerConfig.from_dict({"vocab_size": 37, "d_modle": 3})
    message = str(info.value)
    assert "d_modle" in message
    for field in dataclasses.fields(TransformerConfig):
        assert field.name in message, f"{field.name} missing from: {message}"


def test_from_dict_validates_values():
    with pytest.raises(ConfigError, match="divisible"):
        TransformerConfig.from_dict({**TINY, "num_heads": 5})


def test_build_transformer_accepts_a_dict_and_validates_it():
    assert build_transformer(dict(TINY)).config == make()
    with pytest.raises(ConfigError, match="d_modle"):
        build_transformer({**TINY, "d_modle": 3})


def test_to_dict_from_dict_round_trip():
    cfg = make(
        tgt_vocab_size=41,
        share_embeddings=False,
        num_kv_heads=2,
        activation="swiglu",
        norm="rmsnorm",
        norm_first=True,
        positions="rotary",
        kernel="eager",
        rope_base=500000.0,
        bias=False,
    )
    values = cfg.to_dict()
    assert set(values) == {f.name for f in dataclasses.fields(TransformerConfig)}
    assert values["num_kv_heads"] == 2 and values["rope_base"] == 500000.0
    assert TransformerConfig.from_dict(values) == cfg
    # also through JSON, as in a checkpoint
    assert TransformerConfig.from_dict(json.loads(json.dumps(values))) == cfg


def test_replace_returns_a_validated_copy():
    cfg = make()
    wider = cfg.replace(d_model=64)
    assert wider.d_model == 64 and cfg.d_model == 32
    assert wider.replace(d_model=32) == cfg
    with pytest.raises(ConfigError, match="divisible"):
        cfg.replace(d_model=34)
    with pytest.raises(ConfigError, match="dropout"):
        cfg.replace(dropout=2.0)
    with pytest.raises(ConfigError, match="d_modle"):
        cfg.replace(d_modle=64)


def test_preset_config_builds_each_preset():
    assert set(PRESETS) == {"transformer_base", "transformer_big", "transformer_tiny"}
    for name, values in PRESETS.items():
        cfg = preset_config(name, vocab_size=1000)
        assert cfg.vocab_size == 1000
        for key, value in values.items():
            assert getattr(cfg, key) == value, (name, key)


def test_preset_config_applies_overrides():
    cfg = preset_config("transformer_base", vocab_size=1000, dropout=0.0, d_ff=1024)
    assert (cfg.dropout, cfg.d_ff, cfg.d_model) == (0.0, 1024, 512)


def test_preset_config_unknown_name_lists_the_presets():
    with pytest.raises(ConfigError, match="transformer_bse") as info:
        preset_config("transformer_bse", vocab_size=1000)
    for name in PRESETS:
        assert name in str(info.value)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_without_vocab_size_is_a_type_error(name):
    with pytest.raises(TypeError, match=re.escape(f"{name}() needs vocab_size=")):
        preset_config(name)


def test_preset_function_without_vocab_size_is_a_type_error():
    with pytest.raises(TypeError, match=re.escape("transformer_tiny() needs vocab_size=")):
        transformer_tiny()
