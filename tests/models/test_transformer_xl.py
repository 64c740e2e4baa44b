"""Transformer-XL (formers.models.transformer_xl): segment recurrence proven by its invariants.

No reference implementation we did not write is installable (the official code is not on PyPI
and transformers 5 removed TransfoXL), so the model is held to what the paper defines: reading a
text segment by segment with a memory that covers it equals reading it at once; the memory is
each layer's input at the last M positions, detached; token-by-token decoding, greedy
generation and the stream evaluation equal full recomputation; padded rows equal rows alone.
The attention itself (XL's four terms) is checked against its formula in tests/nn.
"""

from __future__ import annotations

import pytest
import torch
from tolerance import assert_close_to_scale

from formers.inference.generate import generate
from formers.inference.perplexity import stream_loss, window_loss
from formers.models import ConfigError
from formers.models.registry import get_family
from formers.models.transformer_xl import (
    PRESETS,
    TransformerXLConfig,
    build_transformer_xl,
    preset_config,
)
from formers.nn.recurrent_lm import RecurrentLM
from formers.nn.segment_memory import SegmentMemory
from formers.viz import capture_attention

V, L, M = 40, 6, 24  # vocabulary, segment, memory (covers the texts below)


def _model(pre_norm: bool = True, **overrides) -> RecurrentLM:
    values = dict(vocab_size=V, d_model=32, num_layers=3, num_heads=4, d_ff=48,
                  segment_length=L, memory_length=M, dropout=0.0, pre_norm=pre_norm,
                  kernel="eager", bos_id=0, eos_id=1)  # fmt: skip
    torch.manual_seed(0)
    model = build_transformer_xl(TransformerXLConfig(**{**values, **overrides})).eval()
    with torch.no_grad():  # larger weights than the init: attention far from uniform
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return model.double()


@pytest.fixture(params=[True, False], ids=["pre-norm", "post-norm"])
def model(request) -> RecurrentLM:
    return _model(request.param)


def _tokens(b: int, t: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(2, V, (b, t), generator=torch.Generator().manual_seed(seed))


def test_segments_with_memory_equal_one_pass(model):
    x = _tokens(2, 3 * L)
    memory = model.new_memory()
    parts = [model(x[:, i : i + L], memory=memory) for i in range(0, 3 * L, L)]
    full = model(x)
    assert_close_to_scale(torch.cat(parts, dim=1), full)
    assert memory.length == 3 * L


def test_decode_token_by_token_and_by_segments_equal_one_pass(model):
    x = _tokens(2, 2 * L + 3)
    full = model(x)
    memory = model.new_cache()
    steps = torch.cat([model.decode(x[:, i : i + 1], memory) for i in range(x.size(1))], dim=1)
    assert_close_to_scale(steps, full)
    assert_close_to_scale(model.decode(x, model.new_cache()), full)  # read L at a time


def test_memory_is_each_layers_input_at_the_last_positions_detached():
    model = _model().float().train()  # dropout 0: training only turns autograd on
    x = _tokens(2, 2 * L)
    inputs = []
    hooks = [layer.register_forward_pre_hook(lambda _, args: inputs.append(args[0]))
             for layer in model.decoder.layers]  # fmt: skip
    model(x)
    for hook in hooks:
        hook.remove()
    memory = model.new_memory(L - 2)  # shorter than the segment read
    logits = model(x, memory=memory)
    assert memory.length == L - 2
    for saved, seen in zip(memory.layers, inputs, strict=True):
        assert not saved.requires_grad  # SG(h): no gradient flows into an earlier segment
        torch.testing.assert_close(saved, seen[:, -(L - 2) :].detach())
    # the next segment trains through the memory's keys (W_k, W_v) without reaching back
    logits.sum().backward()
    model.zero_grad()
    model(_tokens(2, L, seed=2), memory=memory).sum().backward()
    assert model.decoder.layers[0].self_attn.k_proj.weight.grad.abs().sum() > 0


def test_memory_length_truncates_what_later_segments_see(model):
    x = _tokens(1, 2 * L)
    alone = model(x[:, L:])  # memory 0: every segment alone
    memory = model.new_memory(0)
    model(x[:, :L], memory=memory)
    assert memory.length == 0 and memory.tensors() == {}  # nothing to save in a checkpoint
    assert_close_to_scale(model(x[:, L:], memory=memory), alone)
    short = model.new_memory(2)
    model(x[:, :L], memory=short)
    near = model(x[:, L:], memory=short)
    assert not torch.allclose(near, alone) and not torch.allclose(near, model(x)[:, L:])


def test_causality(model):
    x = _tokens(1, 2 * L)
    y = x.clone()
    y[0, L + 2] = (y[0, L + 2] + 1) % V
    a, b = model.decode(x, model.new_cache()), model.decode(y, model.new_cache())
    assert_close_to_scale(a[:, : L + 2], b[:, : L + 2])
    assert not torch.allclose(a[:, L + 2 :], b[:, L + 2 :])


def test_left_padded_rows_decode_as_each_row_alone(model):
    short, long = _tokens(1, 4, seed=3), _tokens(1, L + 3, seed=4)
    pad = long.size(1) - short.size(1)
    batch = torch.cat([torch.cat([torch.zeros(1, pad, dtype=torch.long), short], 1), long])
    mask = torch.ones_like(batch, dtype=torch.bool)
    mask[0, :pad] = False
    memory = model.new_cache()
    first = model.decode(batch, memory, mask)
    following = _tokens(2, 3, seed=5)
    later = torch.cat([model.decode(following[:, i : i + 1], memory) for i in range(3)], 1)
    for row, prompt in enumerate([short, long]):
        alone = model.decode(torch.cat([prompt, following[row : row + 1]], 1), model.new_cache())
        n = prompt.size(1)
        assert_close_to_scale(first[row, -n:], alone[0, :n])
        assert_close_to_scale(later[row], alone[0, n:])


def test_greedy_generation_equals_argmax_of_recomputation(model):
    prompt = [int(t) for t in _tokens(1, 5)[0]]
    out = generate(model, prompt, max_new_tokens=12, temperature=0, stop_at_eos=False)
    tokens = list(prompt)
    for _ in range(12):
        tokens.append(int(model(torch.tensor([tokens]))[0, -1].argmax()))
    assert out == tokens[len(prompt) :]


def test_generation_with_a_short_memory_differs_and_memory_zero_is_refused(model):
    prompt = [int(t) for t in _tokens(1, 5)[0]]
    options = dict(max_new_tokens=20, temperature=1.0, seed=0, stop_at_eos=False)
    long, short = generate(model, prompt, **options), generate(model, prompt, **options, memory=2)
    assert long == generate(model, prompt, **options, memory=M) and long != short
    with pytest.raises(ValueError, match="memory_length 0.*formers generate --memory"):
        generate(model, prompt, max_new_tokens=2, memory=0)


def test_stream_evaluation_is_each_segment_once(model):
    ids = _tokens(1, 4 * L + 3)[0]
    full = model(ids[None, :-1])[0]
    expected = torch.nn.functional.cross_entropy(full, ids[1:], reduction="mean").detach()
    result = stream_loss(model, ids, memory=len(ids))
    assert result["tokens"] == len(ids) - 1
    assert abs(result["loss"] - float(expected)) < 1e-10
    # memory 0 reads every segment alone: GPT-style windows of one segment
    alone = window_loss(model, ids, context=L, batch_size=3)
    assert abs(stream_loss(model, ids, memory=0)["loss"] - alone["loss"]) < 1e-10
    assert abs(alone["loss"] - result["loss"]) > 1e-3  # the memory changes what is predicted


def test_attention_picture_is_what_the_model_computes(model):
    class Tokens:  # the few methods capture_attention asks of a tokenizer
        def encode(self, text):
            return [2 + ord(c) % (V - 2) for c in text]

        def decode(self, ids):
            return "".join(chr(i) for i in ids)

    record = capture_attention(model.float(), Tokens(), "attention")
    weights = record.views["self"]  # (layers, heads, t, t)
    assert weights.shape == (3, 4, 9, 9)
    assert abs(weights.sum(-1) - 1).max() < 1e-5
    assert abs(weights[..., 0, 1:]).max() == 0  # causal


def test_family_presets_and_sizes():
    family = get_family("transformer_xl")
    assert family.kind == "decoder-only" and family.presets is PRESETS
    base = build_transformer_xl(preset_config("xl_wt103_base", vocab_size=267735))
    # the paper's base without its adaptive softmax: 16 x (attention 4 x 410 x 410 + W_R
    # 410 x 410 + u, v + FFN + 2 norms) + a tied 267,735 x 410 embedding
    per_layer = 5 * 410 * 410 + 2 * 410 + (410 * 2100 + 2100 + 2100 * 410 + 410) + 4 * 410
    assert base.num_parameters() == 16 * per_layer + 267735 * 410
    assert (base.segment_length, base.memory_length) == (150, 150)


def test_bad_configs_and_memories_are_refused():
    with pytest.raises(ConfigError, match="memory_length must be >= 0"):
        preset_config("xl_char_cpu", vocab_size=V, memory_length=-1)
    with pytest.raises(ConfigError, match="segment_length must be a positive int"):
        preset_config("xl_char_cpu", vocab_size=V, segment_length=0)
    with pytest.raises(ConfigError, match="unknown TransformerXLConfig key.*mem_len"):
        TransformerXLConfig.from_dict({"vocab_size": V, "mem_len": 4})
    with pytest.raises(ValueError, match="memory length must be >= 0"):
        SegmentMemory(-1, 2)
    model = _model()
    memory = model.new_memory()
    model(_tokens(2, L), memory=memory)
    with pytest.raises(ValueError, match="memory holds 2 rows but the segment has 3"):
        model(_tokens(3, L), memory=memory)
    with pytest.raises(ValueError, match="saved memory lacks memory.2"):
        saved = memory.tensors()
        model.new_memory().load_tensors({k: v for k, v in saved.items() if k != "memory.2"})
    with pytest.raises(ValueError, match=r"not \(batch, <= 4, width\)"):
        model.new_memory(4).load_tensors(memory.tensors())
    restored = model.new_memory()
    restored.load_tensors(memory.tensors())
    x = _tokens(2, L, seed=9)
    assert torch.equal(model(x, memory=restored), model(x, memory=memory))
