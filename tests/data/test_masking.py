"""BERT/RoBERTa masking (arXiv 1810.04805 section 3.1; arXiv 1907.11692 section 4.1)."""

from __future__ import annotations

import pytest
import torch

from formers.data.masking import IGNORE_INDEX, mask_tokens

VOCAB, MASK, PAD, CLS, SEP = 1000, 4, 0, 2, 3
SPECIALS = {PAD, CLS, SEP}


def batch(b: int = 512, s: int = 256, seed: int = 0) -> torch.Tensor:
    """``[CLS] tokens [SEP] [PAD]...`` rows of varying length."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (b, s), generator=g)
    lengths = torch.randint(s // 2, s + 1, (b,), generator=g)
    positions = torch.arange(s)
    ids[:, 0] = CLS
    ids[positions[None] == lengths[:, None] - 1] = SEP
    ids[positions[None] >= lengths[:, None]] = PAD
    return ids


def corrupt(ids: torch.Tensor, seed: int = 1, **kwargs):
    g = torch.Generator().manual_seed(seed)
    return mask_tokens(
        ids, mask_id=MASK, vocab_size=VOCAB, special_ids=SPECIALS, generator=g, **kwargs
    )


def test_statistics_are_15_percent_then_80_10_10():
    ids = batch()
    inputs, labels = corrupt(ids)
    chosen = labels != IGNORE_INDEX
    ordinary = ~torch.isin(ids, torch.tensor(sorted(SPECIALS)))
    rate = chosen.sum() / ordinary.sum()
    masked = (inputs[chosen] == MASK).float().mean()
    kept = (inputs[chosen] == ids[chosen]).float().mean()
    replaced = ((inputs[chosen] != MASK) & (inputs[chosen] != ids[chosen])).float().mean()
    assert abs(rate - 0.15) < 0.01
    assert abs(masked - 0.8) < 0.02
    assert abs(kept - 0.1) < 0.02
    assert abs(replaced - 0.1) < 0.02


def test_labels_and_untouched_positions():
    ids = batch(64, 64)
    inputs, labels = corrupt(ids)
    chosen = labels != IGNORE_INDEX
    assert torch.equal(labels[chosen], ids[chosen])
    assert torch.all(labels[~chosen] == IGNORE_INDEX)
    assert torch.equal(inputs[~chosen], ids[~chosen])  # only chosen positions change
    assert inputs.shape == ids.shape and inputs.dtype == torch.long


def test_special_tokens_are_never_chosen():
    ids = batch(128, 64)
    special = torch.isin(ids, torch.tensor(sorted(SPECIALS)))
    # even when every ordinary token is chosen
    inputs, labels = corrupt(ids, probability=1.0)
    assert torch.all(labels[special] == IGNORE_INDEX)
    assert torch.equal(inputs[special], ids[special])
    assert torch.all(labels[~special] != IGNORE_INDEX)
    # special ids given as a tensor behave the same
    again = mask_tokens(
        ids,
        mask_id=MASK,
        vocab_size=VOCAB,
        special_ids=torch.tensor([PAD, CLS, SEP]),
        probability=1.0,
        generator=torch.Generator().manual_seed(1),
    )
    assert torch.equal(again[0], inputs) and torch.equal(again[1], labels)


def test_seeded_masks_repeat_and_fresh_seeds_differ():
    ids = batch(32, 64)
    first, second, other = corrupt(ids, seed=7), corrupt(ids, seed=7), corrupt(ids, seed=8)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert not torch.equal(first[1], other[1])  # dynamic masking: a new pattern each draw


def test_random_replacements_stay_in_the_vocabulary():
    vocab = 8
    ids = torch.full((256, 128), 6)
    inputs, labels = mask_tokens(
        ids,
        mask_id=5,
        vocab_size=vocab,
        probability=1.0,
        generator=torch.Generator().manual_seed(0),
    )
    assert inputs.min() >= 0 and inputs.max() < vocab
    # replacements are uniform over the whole vocabulary
    assert set(inputs.unique().tolist()) == set(range(vocab))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (dict(probability=0.0), ValueError, "probability"),
        (dict(mask_id=VOCAB), ValueError, "outside the vocabulary"),
    ],
)
def test_bad_arguments(kwargs, error, message):
    args = dict(mask_id=MASK, vocab_size=VOCAB) | kwargs
    with pytest.raises(error, match=message):
        mask_tokens(batch(2, 8), **args)
    with pytest.raises(TypeError, match="LongTensor"):
        mask_tokens(batch(2, 8).float(), mask_id=MASK, vocab_size=VOCAB)
