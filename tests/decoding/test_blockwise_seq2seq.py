"""Blockwise parallel decoding of an encoder-decoder returns exactly what greedy search returns
(float64), with any heads, for the Transformer and T5; heads fitted on the model's own outputs
get more than one token accepted per pass."""

from __future__ import annotations

import pytest
import torch

from formers.decoding import greedy_search
from formers.decoding.blockwise import BlockwiseHeads, require_hidden_states
from formers.decoding.blockwise_seq2seq import (
    blockwise_greedy,
    fit_translation_heads,
    greedy_targets,
)
from formers.models.t5 import T5Config, build_t5
from tests.export.helpers import TASK, trained_translator


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return trained_translator({}, steps=200).double()


def _sources(n: int = 32, seed: int = 5) -> torch.Tensor:
    return TASK.sample(n, torch.Generator().manual_seed(seed)).src


def _check_equal(model, heads, src, **limits) -> None:
    expected = greedy_search(model, src, **limits)
    found, stats = blockwise_greedy(model, heads, src, **limits)
    assert torch.equal(found.tokens, expected.tokens)
    assert torch.equal(found.lengths, expected.lengths)
    torch.testing.assert_close(found.scores, expected.scores)
    assert stats.tokens == int(expected.lengths.sum())
    assert stats.target_passes <= stats.tokens  # never more passes than greedy search's


@pytest.mark.parametrize("k", [2, 3, 5])
@pytest.mark.parametrize(
    "limits", [dict(), dict(max_len_a=0.0, max_len_b=5), dict(min_len=6), dict(max_len=4)]
)  # fmt: skip
def test_equals_greedy_search_with_any_heads(model, k, limits):
    torch.manual_seed(k)
    heads = BlockwiseHeads(32, k).double()  # untrained: its guesses are mostly wrong
    _check_equal(model, heads, _sources(), **limits)
    _check_equal(model, heads, _sources(1), **limits)


def test_equals_greedy_search_for_t5():
    torch.manual_seed(0)
    cfg = T5Config(vocab_size=TASK.vocab_size, d_model=32, d_kv=8, d_ff=48, num_layers=2,
                   num_decoder_layers=2, num_heads=4, dropout=0.0)  # fmt: skip
    t5 = build_t5(cfg).double().eval()
    with torch.no_grad():  # varied predictions: weights drawn large
        for p in t5.parameters():
            p.mul_(3.0)
    src = _sources(8)
    src[src == 0] = t5.pad_id
    heads = BlockwiseHeads(32, 4).double()
    _check_equal(t5, heads, src, max_len_b=12)


@pytest.fixture(scope="module")
def fitted(model) -> tuple[BlockwiseHeads, list[float], list]:
    """Heads fitted on the model's own outputs: the heads, their losses, and the stats of
    untrained heads on 24 sources decoded one at a time."""
    batch = TASK.sample(512, torch.Generator().manual_seed(1))
    sources = [[t for t in row.tolist() if t] for row in batch.src]
    targets = greedy_targets(model, sources, batch_size=100)
    expected = greedy_search(model, batch.src)
    assert targets[3] == [t for t in expected.tokens[3].tolist() if t not in (0, 2)]
    torch.manual_seed(0)  # the heads' initial weights, whatever ran before
    heads = BlockwiseHeads(32, 4).double()
    src = _sources(24)
    before = [blockwise_greedy(model, heads, src[i : i + 1])[1] for i in range(24)]
    losses = fit_translation_heads(model, heads, sources, targets, steps=250, lr=3e-3)
    return heads, losses, before


def _per_pass(stats) -> float:
    return sum(s.tokens for s in stats) / sum(s.target_passes for s in stats)


def test_fitted_heads_get_several_tokens_accepted(model, fitted):
    heads, losses, before = fitted
    assert sum(losses[-10:]) < 0.7 * sum(losses[:10])
    src = _sources(24)
    after = [blockwise_greedy(model, heads, src[i : i + 1])[1] for i in range(24)]
    # untrained heads about repeat the model's next token (their residual is small): 1.11 here
    assert _per_pass(after) > _per_pass(before) + 0.15  # 1.30
    _check_equal(model, heads, src)  # still greedy search's output


def test_in_a_batch_each_row_keeps_what_it_accepted(model, fitted):
    heads = fitted[0]
    src = _sources(24)
    alone = [blockwise_greedy(model, heads, src[i : i + 1])[1] for i in range(24)]
    _, together = blockwise_greedy(model, heads, src)
    # every row accepts what it would alone: the same passes, tokens and guesses in all
    assert together.target_passes == sum(s.target_passes for s in alone)
    assert together.tokens == sum(s.tokens for s in alone)
    assert together.drafted == sum(s.drafted for s in alone)
    assert together.tokens_per_pass > 1.15


def test_bad_arguments_are_refused(model):
    heads = BlockwiseHeads(32, 3).double()
    with pytest.raises(ValueError, match="2 sources and 1 targets"):
        fit_translation_heads(model, heads, [[3], [4]], [[3]], steps=1)
    with pytest.raises(ValueError, match="every source is empty"):
        fit_translation_heads(model, heads, [[]], [[3]], steps=1)
    with pytest.raises(ValueError, match="max_len_a"):
        blockwise_greedy(model, heads, _sources(2), max_len_a=-1.0)
    with pytest.raises(ValueError, match="encoder-decoder .* LSTM does not give"):
        require_hidden_states(torch.nn.LSTM(2, 2), "--heads")
