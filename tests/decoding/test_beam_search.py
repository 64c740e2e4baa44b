"""Beam search against greedy search, exhaustive enumeration and teacher-forced scoring."""

import itertools
import math

import pytest
import torch

from decoding.helpers import random_sources, sequence_log_prob, tiny_model
from formers.decoding import beam_search, gnmt_length_penalty, greedy_search, length_penalty


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_size_one_equals_greedy(seed):
    model = tiny_model(seed=seed)
    src = random_sources(6, 11, seed=seed)
    greedy = greedy_search(model, src, max_len_b=12)
    beam = beam_search(model, src, beam_size=1, max_len_b=12)
    assert torch.equal(greedy.tokens, beam.tokens)
    assert torch.equal(greedy.lengths, beam.lengths)
    log_probs = torch.tensor([h[0].log_prob for h in beam.nbest])
    torch.testing.assert_close(log_probs, greedy.scores, atol=1e-4, rtol=0)


def _exhaustive_best(model, src, max_len, lp):
    """Score every output of length <= max_len (real tokens then EOS) by brute force."""
    real = [t for t in range(5) if t not in (model.pad_id, model.bos_id, model.eos_id)]
    best = None
    for length in range(1, max_len + 1):
        for prefix in itertools.product(real, repeat=length - 1):
            out = torch.tensor([*prefix, model.eos_id])
            score = sequence_log_prob(model, src, out) / lp(length)
            if best is None or score > best[1]:
                best = (out, score)
    return best


@pytest.mark.parametrize(
    ("form", "alpha", "formula"),
    [
        ("gnmt", 0.0, lambda n: 1.0),
        ("gnmt", 0.6, lambda n: ((5 + n) / 6) ** 0.6),
        ("gnmt", 1.5, lambda n: ((5 + n) / 6) ** 1.5),
        ("power", 1.0, lambda n: n),  # fairseq's default --lenpen 1: the mean per token
        ("power", 2.0, lambda n: n**2),
    ],
)
def test_wide_beam_finds_the_exhaustive_optimum(form, alpha, formula):
    """Vocabulary 5 (pad, bos, eos and two real tokens), outputs of at most 4 tokens: a beam
    wider than the number of prefixes must find the best sequence by exhaustive enumeration."""
    greedy_was_wrong = 0
    for seed in range(12):
        model = tiny_model(vocab_size=5, seed=seed, d_model=16, num_heads=2)
        # sharpen the distributions so that different outputs have clearly different scores
        model.generator.weight.data.mul_(3.0)
        src = random_sources(1, 5, max_len=3, seed=seed)[0]
        best, best_score = _exhaustive_best(model, src, max_len=4, lp=formula)
        lp = length_penalty(form, alpha)
        out = beam_search(
            model, src[None], beam_size=32, length_penalty=lp, max_len_a=0.0, max_len_b=4
        )  # fmt: skip
        found = out.nbest[0][0]
        assert torch.equal(found.tokens, best), (seed, found.tokens, best)
        assert math.isclose(found.score, best_score, abs_tol=1e-4)
        greedy = greedy_search(model, src[None], max_len_a=0.0, max_len_b=4)
        greedy_was_wrong += not torch.equal(greedy.tokens[0, : greedy.lengths[0]], best)
    # the test is only meaningful if search matters: greedy must miss the optimum sometimes
    assert greedy_was_wrong > 0


def test_batch_equals_one_source_at_a_time():
    model = tiny_model(seed=3)
    src = random_sources(5, 11, seed=3)
    batch = beam_search(model, src, beam_size=4, nbest=3, max_len_b=10)
    for i in range(src.size(0)):
        row = src[i : i + 1, : int((src[i] != 0).sum())]
        alone = beam_search(model, row, beam_size=4, nbest=3, max_len_b=10)
        for mine, ref in zip(batch.nbest[i], alone.nbest[0], strict=True):
            assert torch.equal(mine.tokens, ref.tokens)
            assert math.isclose(mine.score, ref.score, abs_tol=1e-4)


def test_scores_match_teacher_forcing_and_are_sorted():
    """Log-probabilities accumulated through the reordered KV cache equal a full recomputation."""
    model = tiny_model(seed=4)
    src = random_sources(4, 11, seed=4)
    out = beam_search(model, src, beam_size=5, nbest=5, lenpen=0.6, max_len_b=9)
    lp = gnmt_length_penalty(0.6)
    for i, hyps in enumerate(out.nbest):
        assert len(hyps) == 5
        scores = [h.score for h in hyps]
        assert scores == sorted(scores, reverse=True)
        assert len({tuple(h.tokens.tolist()) for h in hyps}) == 5, "hypotheses must be distinct"
        for h in hyps:
            assert int(h.tokens[-1]) == model.eos_id
            assert math.isclose(h.score, h.log_prob / lp(h.tokens.numel()), rel_tol=1e-6)
            recomputed = sequence_log_prob(model, src[i], h.tokens)
            assert math.isclose(h.log_prob, recomputed, abs_tol=1e-4)


def test_length_limit_follows_source_length():
    model = tiny_model(seed=5)
    model.generator.weight.data[:, model.eos_id] = -10.0  # never wants to stop
    model.generator.weight.data[model.eos_id] = -1.0
    src = random_sources(4, 11, seed=5)
    src_len = (src != 0).sum(1)
    out = beam_search(model, src, beam_size=3, max_len_a=1.0, max_len_b=2)
    assert torch.equal(out.lengths, src_len + 2)  # a * |x| + b tokens, the last one a forced EOS
    greedy = greedy_search(model, src, max_len_a=1.0, max_len_b=2)
    assert torch.equal(greedy.lengths, src_len + 2)
    capped = beam_search(model, src, beam_size=3, max_len_a=1.0, max_len_b=2, max_len=3)
    assert int(capped.lengths.max()) == 3


def test_min_len_and_no_repeat_ngram():
    model = tiny_model(seed=6)
    src = random_sources(3, 11, seed=6)
    plain = beam_search(model, src, beam_size=3, max_len_b=12)
    rows = zip(plain.tokens, plain.lengths, strict=True)
    assert any(_has_repeat(row[:n].tolist(), 2) for row, n in rows)
    out = beam_search(model, src, beam_size=3, max_len_b=12, min_len=5, no_repeat_ngram_size=2)
    assert bool((out.lengths >= 6).all())
    for hyps in out.nbest:
        assert not _has_repeat(hyps[0].tokens.tolist(), 2)


def test_a_min_len_beyond_the_limit_still_ends_with_eos_at_the_limit():
    model = tiny_model(seed=6)
    src = random_sources(3, 11, seed=6)
    for out in (greedy_search(model, src, max_len_a=0.0, max_len_b=4, min_len=9),
                beam_search(model, src, beam_size=3, max_len_a=0.0, max_len_b=4, min_len=9)):
        assert out.lengths.tolist() == [4, 4, 4]  # EOS at the limit, not padding
        assert out.tokens[:, 3].tolist() == [model.eos_id] * 3
        assert bool((out.tokens[:, :3] != model.pad_id).all())
        assert bool(torch.isfinite(out.scores).all())


def _has_repeat(seq, n):
    grams = [tuple(seq[i : i + n]) for i in range(len(seq) - n + 1)]
    return len(grams) != len(set(grams))


@pytest.mark.parametrize(
    "kwargs", [dict(beam_size=0), dict(beam_size=2, nbest=3), dict(max_len_a=-1.0)]
)
def test_impossible_options_are_rejected(kwargs):
    with pytest.raises(ValueError):
        beam_search(tiny_model(), random_sources(2, 11), **kwargs)


@pytest.mark.parametrize("early_stopping", ["sometimes", None, 1])
def test_unknown_early_stopping_is_rejected(early_stopping):
    with pytest.raises(ValueError, match="early_stopping"):
        beam_search(tiny_model(), random_sources(2, 11), early_stopping=early_stopping)


def test_later_stopping_only_adds_finished_hypotheses():
    """A source's beams evolve the same whatever the stopping rule, so searching on (False,
    then "never") only finishes more hypotheses: the best score can only improve."""
    improved = 0
    for seed in range(4):
        model = tiny_model(seed=seed)
        src = random_sources(6, 11, seed=seed)
        runs = [
            beam_search(
                model,
                src,
                beam_size=3,
                max_len_b=10,
                length_penalty=lambda n: n,
                early_stopping=rule,
            )  # fmt: skip
            for rule in (True, False, "never")
        ]
        for earlier, later in itertools.pairwise(runs):
            assert (later.scores >= earlier.scores - 1e-6).all()
            improved += int((later.scores > earlier.scores + 1e-6).sum())
    assert improved > 0  # the rules do differ on these models


def test_forced_eos_log_prob_scores_the_eos_forced_at_the_limit():
    model = tiny_model(seed=3)
    src = random_sources(4, 11, seed=3)
    limit = 3
    out = beam_search(model, src, beam_size=3, nbest=3, max_len_a=0.0, max_len_b=limit,
                      forced_eos_log_prob=0.0)  # fmt: skip
    checked = 0
    for i, hyps in enumerate(out.nbest):
        for h in hyps:
            if len(h.tokens) == limit:  # EOS was forced: only the tokens before it count
                expected = sequence_log_prob(model, src[i], h.tokens[:-1])
                checked += 1
            else:
                expected = sequence_log_prob(model, src[i], h.tokens)
            assert math.isclose(h.log_prob, expected, abs_tol=1e-4)
    assert checked > 0


def test_unknown_length_penalty_form_names_the_valid_ones():
    with pytest.raises(ValueError, match="unknown length penalty form 'fairseq'.*gnmt, power"):
        length_penalty("fairseq", 1.0)
