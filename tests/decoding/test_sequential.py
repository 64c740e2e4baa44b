"""Greedy decoding, sampling and the shared constraints."""

import pytest
import torch

from decoding.helpers import random_sources, sequence_log_prob, tiny_model
from formers.decoding import filter_logits, greedy_search, sample
from formers.decoding.base import ban_repeated_ngrams, max_lengths


def test_greedy_equals_stepwise_argmax_without_cache():
    """Each greedy token is the argmax of a full (cache-free) forward over the prefix."""
    model = tiny_model(seed=1)
    src = random_sources(4, 11, seed=1)
    out = greedy_search(model, src, max_len_b=8)
    for i in range(src.size(0)):
        tokens = out.tokens[i, : out.lengths[i]]
        prefix = torch.tensor([[model.bos_id]])
        for t, token in enumerate(tokens):
            logits = model(src[i : i + 1], prefix)[0, -1]
            logits[[model.pad_id, model.bos_id]] = -torch.inf
            if t + 1 == int(max_lengths((src[i] != 0).sum()[None], 1.0, 8)[0]):
                assert int(token) == model.eos_id
            else:
                assert int(token) == int(logits.argmax())
            prefix = torch.cat([prefix, token.view(1, 1)], dim=1)
        assert abs(float(out.scores[i]) - sequence_log_prob(model, src[i], tokens)) < 1e-4


def test_sampling_is_reproducible_and_seed_dependent():
    model = tiny_model(seed=2)
    src = random_sources(8, 11, seed=2)
    a = sample(model, src, seed=7, max_len_b=10)
    b = sample(model, src, seed=7, max_len_b=10)
    c = sample(model, src, seed=8, max_len_b=10)
    assert torch.equal(a.tokens, b.tokens)
    assert not torch.equal(a.tokens, c.tokens)


@pytest.mark.parametrize("kwargs", [dict(top_k=1), dict(top_p=1e-6), dict(temperature=1e-4)])
def test_degenerate_sampling_is_greedy(kwargs):
    model = tiny_model(seed=3)
    src = random_sources(5, 11, seed=3)
    greedy = greedy_search(model, src, max_len_b=10)
    sampled = sample(model, src, seed=0, max_len_b=10, **kwargs)
    assert torch.equal(greedy.tokens, sampled.tokens)


def test_filter_logits_against_brute_force():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 20, generator=g)
    for top_k, top_p in [(5, 1.0), (0, 0.7), (8, 0.5), (0, 1.0)]:
        kept = torch.isfinite(filter_logits(logits, top_k, top_p))
        for row, keep in zip(logits, kept, strict=True):
            order = row.argsort(descending=True).tolist()
            allowed = order[:top_k] if top_k else order
            # top-p applies to the distribution renormalized after top-k (as Hugging Face's)
            probs = torch.full_like(row, -torch.inf).index_copy(
                0, torch.tensor(allowed), row[allowed]
            )
            probs = probs.softmax(-1)
            expected, mass = set(), 0.0
            for token in allowed:
                if mass >= top_p:
                    break
                expected.add(token)
                mass += float(probs[token])
            assert set(keep.nonzero().squeeze(1).tolist()) == expected


def test_top_k_samples_only_the_k_best():
    model = tiny_model(seed=4)
    src = random_sources(1, 11, seed=4).repeat(64, 1)
    out = sample(model, src, seed=0, top_k=2, max_len_a=0.0, max_len_b=2)
    first = out.tokens[:, 0]
    lprobs = model(src[:1], torch.tensor([[model.bos_id]]))[0, -1]
    lprobs[[model.pad_id, model.bos_id]] = -torch.inf
    top2 = set(lprobs.topk(2).indices.tolist())
    assert set(first.tolist()) <= top2
    assert len(set(first.tolist())) == 2  # both appear in 64 draws


def test_ban_repeated_ngrams_against_brute_force():
    g = torch.Generator().manual_seed(0)
    history = torch.randint(0, 4, (10, 9), generator=g)
    for n in (1, 2, 3):
        banned = torch.isinf(ban_repeated_ngrams(torch.zeros(10, 4), history, n))
        for row, ban in zip(history.tolist(), banned, strict=True):
            expected = {
                row[i + n - 1]
                for i in range(len(row) - n + 1)
                if row[i : i + n - 1] == row[len(row) - n + 1 :]
            }
            assert set(ban.nonzero().squeeze(1).tolist()) == expected


@pytest.mark.parametrize("kwargs", [dict(temperature=0.0), dict(top_p=0.0), dict(top_k=-1)])
def test_bad_sampling_options(kwargs):
    with pytest.raises(ValueError):
        sample(tiny_model(), random_sources(2, 11), **kwargs)
