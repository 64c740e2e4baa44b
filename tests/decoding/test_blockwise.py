"""Blockwise parallel decoding returns exactly what greedy generation returns (float64), with any
heads; heads trained on a stream the model has learned get whole blocks accepted."""

from __future__ import annotations

import pytest
import torch

from formers.decoding.blockwise import BlockwiseHeads, blockwise_generate, fit_heads
from formers.inference.generate import generate
from formers.models.gpt import GPTConfig, build_gpt
from tests.export.helpers import char_gpt


@pytest.mark.parametrize("k", [2, 3, 5])
@pytest.mark.parametrize("new", [1, 2, 9, 17, 40])  # 40: past the context (24)
def test_equals_greedy_generation_with_any_heads(k, new):
    model, tokenizer = char_gpt()
    model = model.double()
    torch.manual_seed(k)
    heads = BlockwiseHeads(model.config.d_model, k).double()  # untrained: guesses mostly wrong
    prompt = tokenizer.encode("hello")
    expected = generate(model, prompt, max_new_tokens=new, temperature=0.0)
    found, stats = blockwise_generate(model, heads, prompt, max_new_tokens=new)
    assert found == expected
    assert stats.tokens == len(expected)
    assert stats.target_passes <= max(0, len(expected) - 1) + (new > 19)


def test_stops_after_the_eos():
    model, tokenizer = char_gpt()
    model = model.double()
    heads = BlockwiseHeads(model.config.d_model, 4).double()
    prompt = tokenizer.encode("hello")
    free = generate(model, prompt, max_new_tokens=12, temperature=0.0, stop_at_eos=False)
    model.eos_id = free[5]  # a token the model emits: generation must end there
    expected = generate(model, prompt, max_new_tokens=12, temperature=0.0)
    assert expected[-1] == model.eos_id and len(expected) < 12
    found, _ = blockwise_generate(model, heads, prompt, max_new_tokens=12)
    assert found == expected


def _periodic_model() -> tuple[torch.nn.Module, torch.Tensor]:
    """A tiny GPT trained on a stream with period 7, and the stream."""
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=8, d_model=32, num_layers=2, num_heads=4, d_ff=64, dropout=0.0,
                    attention_dropout=0.0, context_length=32, pad_id=None, bos_id=None,
                    eos_id=None)  # fmt: skip
    model = build_gpt(cfg)
    stream = torch.tensor([3, 1, 4, 1, 5, 2, 6] * 60)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(120):
        starts = torch.randint(0, stream.numel() - 33, (16,))
        window = torch.stack([stream[s : s + 33] for s in starts.tolist()])
        logits = model(window[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), window[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), stream


def test_trained_heads_get_whole_blocks_accepted():
    model, stream = _periodic_model()
    prompt = stream[:8].tolist()
    expected = generate(model, prompt, max_new_tokens=20, temperature=0.0)
    assert expected == stream[8:28].tolist()  # the model has learned the stream
    heads = BlockwiseHeads(32, 4)
    untrained, before = blockwise_generate(model, heads, prompt, max_new_tokens=20)
    losses = fit_heads(model, heads, stream, steps=150, lr=3e-3)
    assert losses[-1] < 0.1 * losses[0]
    found, stats = blockwise_generate(model, heads, prompt, max_new_tokens=20)
    assert found == untrained == expected
    # blocks of 4, nearly all accepted: at most 6 passes where greedy decoding makes 19
    assert stats.target_passes <= 6 < before.target_passes


def test_bad_arguments_are_refused():
    model, tokenizer = char_gpt()
    heads = BlockwiseHeads(model.config.d_model, 3)
    with pytest.raises(ValueError, match="block size.* must be >= 2"):
        BlockwiseHeads(32, 1)
    with pytest.raises(ValueError, match="non-empty prompt"):
        blockwise_generate(model, heads, [], max_new_tokens=3)
    with pytest.raises(ValueError, match="max_new_tokens must be >= 1"):
        blockwise_generate(model, heads, tokenizer.encode("hello"), max_new_tokens=0)
    with pytest.raises(ValueError, match="shorter than a window"):
        fit_heads(model, heads, torch.tensor([1, 2, 3]), steps=1)
