"""Speculative greedy decoding returns exactly what plain greedy search returns (in float64,
where the one-pass scoring of k + 1 positions cannot round differently), whatever the draft,
and a draft that agrees with the model is accepted whole."""

from __future__ import annotations

import pytest
import torch

from formers.decoding import greedy_search
from formers.decoding.speculative import speculative_generate, speculative_greedy
from formers.inference.generate import generate
from tests.export.helpers import TASK, char_gpt, trained_translator


@pytest.fixture(scope="module")
def pair() -> tuple[torch.nn.Module, torch.nn.Module]:
    target = trained_translator({}, steps=200).double()
    draft = trained_translator(dict(num_encoder_layers=1, num_decoder_layers=1), steps=60,
                               seed=1).double()  # fmt: skip
    return target, draft


def _sources(n: int = 32) -> torch.Tensor:
    return TASK.sample(n, torch.Generator().manual_seed(5)).src


@pytest.mark.parametrize("k", [1, 2, 4, 7])
@pytest.mark.parametrize(
    "limits", [dict(), dict(max_len_a=0.0, max_len_b=5), dict(min_len=6)]
)  # fmt: skip
def test_equals_greedy_search(pair, k, limits):
    target, draft = pair
    src = _sources()
    expected = greedy_search(target, src, **limits)
    found, stats = speculative_greedy(target, draft, src, k=k, **limits)
    assert torch.equal(found.tokens, expected.tokens)
    assert torch.equal(found.lengths, expected.lengths)
    torch.testing.assert_close(found.scores.double(), expected.scores.double())
    assert stats.tokens == int(expected.lengths.sum())


def test_a_draft_that_agrees_is_accepted_whole(pair):
    target, draft = pair
    src = _sources(1)
    _, same = speculative_greedy(target, target, src, k=4)
    _, other = speculative_greedy(target, draft, src, k=4)
    assert same.tokens_per_pass > 3.0  # k + 1 = 5 per pass but for the tail
    assert 1.0 <= other.tokens_per_pass < same.tokens_per_pass


@pytest.mark.parametrize("k", [1, 3, 6])
@pytest.mark.parametrize("new", [15, 40])  # 40: past the context (24), whose window slides
def test_language_model_equals_greedy_generation(k, new):
    model, tokenizer = char_gpt()
    draft, _ = char_gpt(num_layers=1)
    with torch.no_grad():  # another draft than the model's first layer
        for p in draft.parameters():
            p.add_(0.1 * torch.randn_like(p))
    model, draft = model.double(), draft.double()
    prompt = tokenizer.encode("hello")
    expected = generate(model, prompt, max_new_tokens=new, temperature=0.0)
    found, stats = speculative_generate(model, draft, prompt, max_new_tokens=new, k=k)
    assert found == expected
    assert stats.tokens == len(expected)


def test_bad_arguments_are_refused(pair):
    target, draft = pair
    with pytest.raises(ValueError, match="k .* must be >= 1"):
        speculative_greedy(target, draft, _sources(2), k=0)
    model, tokenizer = char_gpt()
    with pytest.raises(ValueError, match="max_new_tokens must be >= 1"):
        speculative_generate(model, model, tokenizer.encode("hello"), max_new_tokens=0)
