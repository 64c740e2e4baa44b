"""``formers.interop``: Hugging Face models reach the converter of their family and back, from a
directory or an object; what no converter reads is refused with the supported list."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from formers import interop
from formers.models.bert import BertConfig, build_bert
from formers.models.gpt import GPTConfig, build_gpt
from formers.models.hf_common import ConversionError
from formers.nn.decoder_only import DecoderOnlyLM
from formers.nn.encoder_decoder import EncoderDecoder
from formers.nn.encoder_heads import EncoderForMaskedLM

transformers = pytest.importorskip("transformers", reason="needs pip install 'formers[hf]'")


def tiny_hf(model_type: str):
    torch.manual_seed(0)
    if model_type == "bert":
        config = transformers.BertConfig(
            vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
            intermediate_size=32, max_position_embeddings=20,
        )  # fmt: skip
        return transformers.BertModel(config).eval()
    if model_type == "gpt2":
        config = transformers.GPT2Config(
            n_layer=1, n_embd=16, n_head=2, vocab_size=50, n_positions=20, bos_token_id=None,
            eos_token_id=None,
        )  # fmt: skip
        return transformers.GPT2LMHeadModel(config).eval()
    if model_type == "llama":
        config = transformers.LlamaConfig(
            num_hidden_layers=1, hidden_size=16, intermediate_size=32, num_attention_heads=2,
            vocab_size=50, max_position_embeddings=20, bos_token_id=None, eos_token_id=None,
        )  # fmt: skip
        return transformers.LlamaForCausalLM(config).eval()
    config = transformers.MarianConfig(
        vocab_size=50, d_model=16, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
        decoder_ffn_dim=32, max_position_embeddings=20, pad_token_id=49,
        decoder_start_token_id=49, eos_token_id=0,
    )  # fmt: skip
    return transformers.MarianMTModel(config).eval()


OURS = {"bert": nn.Module, "gpt2": DecoderOnlyLM, "llama": DecoderOnlyLM, "marian": EncoderDecoder}
FAMILY = {"bert": "bert", "gpt2": "gpt", "llama": "gpt", "marian": "transformer"}


@pytest.mark.parametrize("model_type", list(OURS))
def test_objects_and_directories_reach_their_family_and_back(model_type, tmp_path):
    hf = tiny_hf(model_type)
    ours = interop.from_hf(hf)
    assert isinstance(ours, OURS[model_type])
    assert type(ours.config).__module__.startswith(f"formers.models.{FAMILY[model_type]}.")
    back = interop.to_hf(ours)
    assert type(back) is type(hf)
    assert interop.save_hf(ours, tmp_path / "out") == tmp_path / "out"
    again = interop.from_hf(tmp_path / "out")
    for name, tensor in ours.state_dict().items():
        assert torch.equal(again.state_dict()[name], tensor), name


def test_bert_heads_are_passed_through(tmp_path):
    tiny_hf("bert").save_pretrained(tmp_path)
    with pytest.warns(UserWarning, match="newly initialized"):
        model = interop.from_hf(tmp_path, mlm_head=True)
    assert isinstance(model, EncoderForMaskedLM)


def test_head_options_are_refused_for_other_families():
    with pytest.raises(ConversionError, match="only BERT takes head options"):
        interop.from_hf(tiny_hf("gpt2"), num_labels=2)
    with pytest.raises(ConversionError, match="'bogus'"):
        interop.from_hf(tiny_hf("bert"), bogus=1)


def test_unsupported_model_types_name_the_supported_ones(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bart"}))
    with pytest.raises(ConversionError, match="'bart'.*bert, gpt2, llama, marian, t5"):
        interop.from_hf(tmp_path)
    with pytest.raises(ConversionError, match="'roberta'"):
        interop.from_hf(SimpleNamespace(config=SimpleNamespace(model_type="roberta")))


def test_a_directory_without_config_is_refused(tmp_path):
    with pytest.raises(ConversionError, match="no config.json"):
        interop.from_hf(tmp_path)
    with pytest.raises(ConversionError, match="not a directory"):
        interop.from_hf(tmp_path / "missing")


def test_models_without_a_formers_config_are_refused():
    with pytest.raises(ConversionError, match="has no .config"):
        interop.to_hf(nn.Linear(2, 2))
    stranger = nn.Linear(2, 2)
    stranger.config = SimpleNamespace()
    with pytest.raises(ConversionError, match="not the config of a formers model family"):
        interop.save_hf(stranger, "unused")


def test_features_without_a_hugging_face_counterpart_are_named():
    shape = dict(vocab_size=20, d_model=16, num_layers=1, num_heads=2, d_ff=32)
    gpt = build_gpt(GPTConfig(**shape, positions="sinusoidal"))
    with pytest.raises(ConversionError, match="positions='sinusoidal'"):
        interop.to_hf(gpt)
    ids = dict(cls_id=1, sep_id=2, mask_id=3, unk_id=4)
    bert = build_bert(BertConfig(**shape, **ids, activation="relu"))
    with pytest.raises(ConversionError, match="activation='relu'"):
        interop.to_hf(bert)
