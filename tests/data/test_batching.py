"""Token-count batching with length bucketing and per-epoch shuffling; collation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from formers.data.parallel import EncodedParallel, TokenBatchSampler, collate

RNG = np.random.default_rng(0)
SRC = RNG.integers(1, 60, size=500)
TGT = np.clip(SRC + RNG.integers(-5, 6, size=500), 1, None)
MAX_TOKENS = 512


def cost(batch: list[int]) -> int:
    return max(max(SRC[batch]), max(TGT[batch]) + 1) * len(batch)


def sampler(shuffle: bool = True, seed: int = 0, epoch: int = 0) -> TokenBatchSampler:
    s = TokenBatchSampler(SRC, TGT, MAX_TOKENS, shuffle=shuffle, seed=seed)
    s.set_epoch(epoch)
    return s


@pytest.mark.parametrize("shuffle", [True, False])
def test_every_index_once_per_epoch_and_each_batch_within_max_tokens(shuffle):
    s = sampler(shuffle)
    for epoch in range(3):
        s.set_epoch(epoch)
        batches = list(s)
        assert len(batches) == len(s)
        assert sorted(i for b in batches for i in b) == list(range(len(SRC)))
        assert all(b and cost(b) <= MAX_TOKENS for b in batches)


def test_batches_are_length_homogeneous():
    def efficiency(batches):  # real tokens over padded tokens, both sides
        real = sum(SRC[b].sum() + TGT[b].sum() + len(b) for b in batches)
        padded = sum(len(b) * (SRC[b].max() + TGT[b].max() + 1) for b in batches)
        return real / padded

    bucketed = list(sampler())
    assert efficiency(bucketed) > 0.9
    sizes = np.maximum(SRC, TGT + 1)
    ranges = sorted((sizes[b].min(), sizes[b].max()) for b in bucketed)
    assert all(hi <= next_lo for (_, hi), (next_lo, _) in zip(ranges, ranges[1:], strict=False))
    shuffled = np.random.default_rng(1).permutation(len(SRC))
    unbucketed = np.array_split(shuffled, len(bucketed))
    assert efficiency(bucketed) > efficiency(unbucketed) + 0.2


def test_batches_are_filled_greedily():
    batches = list(sampler(shuffle=False))
    for batch, following in zip(batches, batches[1:], strict=False):
        assert cost(batch + following[:1]) > MAX_TOKENS


def test_same_seed_and_epoch_give_the_same_batches():
    assert list(sampler(seed=3, epoch=2)) == list(sampler(seed=3, epoch=2))
    s = sampler(seed=3)
    first = list(s)
    s.set_epoch(1)
    list(s)
    s.set_epoch(0)
    assert list(s) == first


def test_other_epochs_and_seeds_give_other_orders():
    base = list(sampler(seed=0, epoch=0))
    assert list(sampler(seed=0, epoch=1)) != base
    assert list(sampler(seed=1, epoch=0)) != base
    assert len(list(sampler(seed=0, epoch=1))) == len(base)


def test_without_shuffle_batches_come_in_length_order_every_epoch():
    s = sampler(shuffle=False)
    order = [i for b in s for i in b]
    sizes = np.maximum(SRC, TGT + 1)[order]
    assert np.all(np.diff(sizes) >= 0)
    s.set_epoch(5)
    assert [i for b in s for i in b] == order


def test_a_sentence_longer_than_max_tokens_is_an_error():
    with pytest.raises(
        ValueError,
        match=r"sentence pair 1 needs 41 tokens .* max_tokens is 40 \(2 pairs are too long\)",
    ):
        TokenBatchSampler([3, 41, 50, 40], [3, 3, 3, 39], 40, shuffle=True, seed=0)
    with pytest.raises(ValueError, match=r"needs 11 tokens \(source 2, target 10 \+ 1\)"):
        TokenBatchSampler([2], [10], 10, shuffle=False)


def test_bad_arguments_and_empty_data():
    with pytest.raises(ValueError, match="max_tokens"):
        TokenBatchSampler([1], [1], 0, shuffle=False)
    with pytest.raises(ValueError, match="1-D"):
        TokenBatchSampler([1, 2], [1], 10, shuffle=False)
    empty = TokenBatchSampler([], [], 10, shuffle=True)
    assert len(empty) == 0 and list(empty) == []


def test_collate_adds_bos_and_eos_and_pads_on_the_right():
    data = EncodedParallel.from_ids([[4, 5, 6], [7]], [[8, 9], [10, 11, 12]])
    batch = collate(data, [1, 0])
    assert batch.src.tolist() == [[7, 0, 0], [4, 5, 6]]
    assert batch.tgt_in.tolist() == [[1, 10, 11, 12], [1, 8, 9, 0]]
    assert batch.tgt_out.tolist() == [[10, 11, 12, 2], [8, 9, 2, 0]]
    assert batch.src.dtype == batch.tgt_in.dtype == batch.tgt_out.dtype == torch.long


def test_collate_with_other_special_ids():
    data = EncodedParallel.from_ids([[4, 5], [6]], [[8], [9, 9]])
    batch = collate(data, [0, 1], pad_id=-1, bos_id=100, eos_id=101)
    assert batch.src.tolist() == [[4, 5], [6, -1]]
    assert batch.tgt_in.tolist() == [[100, 8, -1], [100, 9, 9]]
    assert batch.tgt_out.tolist() == [[8, 101, -1], [9, 9, 101]]


def test_collated_sampler_batches_fit_max_tokens():
    rng = np.random.default_rng(1)
    src = [rng.integers(4, 50, size=n).tolist() for n in SRC]
    tgt = [rng.integers(4, 50, size=n).tolist() for n in TGT]
    data = EncodedParallel.from_ids(src, tgt)
    for indices in TokenBatchSampler(data.src_lengths, data.tgt_lengths, MAX_TOKENS, shuffle=True):
        batch = collate(data, indices)
        b, s = batch.src.shape
        assert b == len(indices) and batch.tgt_in.shape == batch.tgt_out.shape
        assert max(s, batch.tgt_in.shape[1]) * b <= MAX_TOKENS
        for row, i in enumerate(indices):
            n = len(tgt[i])
            assert batch.src[row, : len(src[i])].tolist() == src[i]
            assert batch.tgt_out[row, : n + 1].tolist() == [*tgt[i], 2]


def test_collate_needs_indices():
    with pytest.raises(ValueError, match="non-empty"):
        collate(EncodedParallel.from_ids([[4]], [[5]]), [])
