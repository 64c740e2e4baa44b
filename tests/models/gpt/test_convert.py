"""Parity with Hugging Face GPT-2 and LLaMA, a reference we did not write: the same weights give
the same logits and the same greedy continuation; round trips are exact; broken checkpoints are
refused with errors that name what is wrong.

The reference models are built offline from small configs with a fixed seed (no download).
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from formers.inference.generate import generate
from formers.models.gpt import GPTConfig, build_gpt
from formers.models.gpt.convert import (
    config_from_hf,
    load_hf,
    save_hf,
    state_dict_to_hf,
    to_hf,
)
from formers.models.hf_common import ConversionError

transformers = pytest.importorskip("transformers", reason="needs pip install 'formers[hf]'")

VOCAB, BOS, EOS = 100, 98, 99
TOL = 1e-4
PROMPT = [5, 17, 42]
# 0.2 rather than GPT-2's 0.02: with tiny random weights greedy decoding repeats one token,
# which would make the generation comparison nearly vacuous
INIT = 0.2


def _gpt2():
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_layer=2, n_embd=64, n_head=4, vocab_size=VOCAB, n_positions=128, bos_token_id=BOS,
        eos_token_id=EOS, initializer_range=INIT,
    )  # fmt: skip
    return transformers.GPT2LMHeadModel(config).eval()


def _llama():
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        num_hidden_layers=2, hidden_size=64, intermediate_size=96, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=VOCAB, max_position_embeddings=128,
        rms_norm_eps=1e-6, rope_theta=500000.0, tie_word_embeddings=False, bos_token_id=BOS,
        eos_token_id=EOS, initializer_range=INIT,
    )  # fmt: skip
    return transformers.LlamaForCausalLM(config).eval()


REFERENCES = {"gpt2": _gpt2, "llama": _llama}


@pytest.fixture(scope="module", params=list(REFERENCES))
def hf(request):
    return REFERENCES[request.param]()


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("gpt2")
    _gpt2().save_pretrained(path)
    return path


def _batch() -> torch.Tensor:
    return torch.randint(0, VOCAB, (3, 21), generator=torch.Generator().manual_seed(1))


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


@torch.no_grad()
def test_logits_match_from_the_model_object(hf):
    ours = load_hf(hf)
    diff = _max_diff(ours(_batch()), hf(_batch()).logits)
    print(f"\n{hf.config.model_type}: max |logit difference| = {diff:.2e}")
    assert diff < TOL
    assert not ours.training


@torch.no_grad()
def test_logits_match_from_a_saved_directory(hf, tmp_path):
    hf.save_pretrained(tmp_path)
    ours = load_hf(tmp_path)
    assert _max_diff(ours(_batch()), hf(_batch()).logits) < TOL
    assert (ours.bos_id, ours.eos_id) == (BOS, EOS)


def test_config_mapping():
    cfg = config_from_hf(_gpt2().config)
    assert (cfg.activation, cfg.norm, cfg.positions, cfg.context_length) == (
        "gelu_tanh", "layernorm", "learned", 128,
    )  # fmt: skip
    assert cfg.d_ff == 4 * 64 and cfg.tie_output and cfg.pad_id is None
    llama = config_from_hf(_llama().config.to_dict())
    assert (llama.kv_heads, llama.rope_base, llama.norm_eps) == (2, 500000.0, 1e-6)
    assert not llama.tie_output and not llama.bias and llama.activation == "swiglu"


def test_greedy_generation_matches_hf_generate(hf):
    ours = load_hf(hf)
    with torch.no_grad():
        out = hf.generate(
            torch.tensor([PROMPT]), attention_mask=torch.ones(1, len(PROMPT), dtype=torch.long),
            do_sample=False, max_new_tokens=50, pad_token_id=EOS,
        )  # fmt: skip
    reference = out[0, len(PROMPT) :].tolist()
    # both stop right after EOS (a batch of one is never padded), so the lists are comparable
    mine = generate(ours, PROMPT, max_new_tokens=50, temperature=0)
    assert mine == reference
    assert len(mine) >= 40 and len(set(mine)) >= 10  # a real continuation, not one repeated id


@torch.no_grad()
def test_round_trip_ours_to_hf_to_ours_is_exact(hf):
    ours = load_hf(hf)
    back = to_hf(ours)
    assert type(back) is type(hf)
    assert torch.equal(back(_batch()).logits, hf(_batch()).logits)
    assert torch.equal(load_hf(back)(_batch()), ours(_batch()))


@torch.no_grad()
def test_a_model_of_ours_saves_as_a_hf_directory(tmp_path):
    ours = build_gpt(GPTConfig(vocab_size=VOCAB, d_model=32, num_layers=2, num_heads=4, d_ff=64,
                               context_length=64, bos_id=BOS, eos_id=EOS)).eval()  # fmt: skip
    save_hf(ours, tmp_path)
    assert {"config.json", "model.safetensors"} <= {p.name for p in tmp_path.iterdir()}
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "gpt2"
    reference = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    assert _max_diff(reference(_batch()).logits, ours(_batch())) < TOL
    assert torch.equal(load_hf(tmp_path)(_batch()), ours(_batch()))
    names = state_dict_to_hf(ours)
    assert names["transformer.h.0.attn.c_attn.weight"].shape == (32, 96)  # Conv1D: (in, out)


def test_a_config_hf_cannot_express_is_refused():
    model = build_gpt(GPTConfig(vocab_size=VOCAB, d_model=32, num_layers=1, num_heads=4,
                                norm="rmsnorm", bias=False))  # fmt: skip
    with pytest.raises(ConversionError, match=r"GPT-2 has no norm='rmsnorm', bias=False"):
        to_hf(model)


# --- broken checkpoints ------------------------------------------------------------------------


def _copy(src, dst, edit=None, config_edit=None):
    dst.mkdir()
    config = json.loads((src / "config.json").read_text())
    if config_edit:
        config_edit(config)
    (dst / "config.json").write_text(json.dumps(config))
    state = load_file(str(src / "model.safetensors"))
    if edit:
        edit(state)
    save_file(state, str(dst / "model.safetensors"))
    return dst


def test_another_model_type_names_the_supported_ones(gpt2_dir, tmp_path):
    bert = _copy(gpt2_dir, tmp_path / "bert", config_edit=lambda c: c.update(model_type="bert"))
    with pytest.raises(ConversionError, match=r"model_type 'bert' is not supported.*gpt2, llama"):
        load_hf(bert)


def test_a_missing_tensor_is_named(gpt2_dir, tmp_path):
    broken = _copy(gpt2_dir, tmp_path / "m", edit=lambda s: s.pop("transformer.h.1.mlp.c_fc.bias"))
    with pytest.raises(ConversionError, match=r"missing tensors \[h\.1\.mlp\.c_fc\.bias\]"):
        load_hf(broken)


def test_a_mis_shaped_tensor_is_named(gpt2_dir, tmp_path):
    def edit(state):
        state["transformer.wpe.weight"] = state["transformer.wpe.weight"][:100].contiguous()

    broken = _copy(gpt2_dir, tmp_path / "s", edit=edit)
    with pytest.raises(ConversionError, match=r"wpe\.weight \(100, 64\) \(expected \(128, 64\)\)"):
        load_hf(broken)


def test_an_unexpected_tensor_is_named(gpt2_dir, tmp_path):
    def edit(state):
        state["transformer.h.0.attn.q_attn.weight"] = torch.zeros(64, 64)

    broken = _copy(gpt2_dir, tmp_path / "u", edit=edit)
    with pytest.raises(ConversionError, match=r"unexpected tensors \[h\.0\.attn\.q_attn\.weight\]"):
        load_hf(broken)


def test_a_directory_without_weights_is_refused(gpt2_dir, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text((gpt2_dir / "config.json").read_text())
    with pytest.raises(ConversionError, match="has no model.safetensors"):
        load_hf(empty)


def test_unsupported_gpt2_features_are_named():
    with pytest.raises(ConversionError, match="scale_attn_by_inverse_layer_idx"):
        config_from_hf({**_gpt2().config.to_dict(), "scale_attn_by_inverse_layer_idx": True})
    with pytest.raises(ConversionError, match="activation_function='tanh'"):
        config_from_hf({**_gpt2().config.to_dict(), "activation_function": "tanh"})
    with pytest.raises(ConversionError, match="cannot load from int"):
        load_hf(3)
