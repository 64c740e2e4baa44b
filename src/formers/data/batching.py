"""Token-count batching with length bucketing, and collation into teacher-forcing batches.

As in the Transformer paper (section 5.1: "sentence pairs were batched together by approximate
sequence length", about 25,000 source and 25,000 target tokens a batch) and fairseq's
``--max-tokens``: pairs sorted by length are cut into batches whose padded size stays under
``max_tokens``, and the order of the batches is shuffled every epoch.

Shapes: b batch, s source length, t target length (+1 for BOS or EOS).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from formers.data.synthetic import Batch

if TYPE_CHECKING:
    from formers.data.parallel import EncodedParallel


class TokenBatchSampler:
    """Batches of pair indices whose padded size stays within ``max_tokens``.

    A batch of ``n`` pairs costs ``max(max source length, max target length + 1) * n`` tokens
    (the +1 is BOS or EOS). Pairs are sorted by that length and cut greedily, so each batch holds
    pairs of similar length; with ``shuffle``, ties in length are broken at random and the batch
    order is shuffled, both from ``(seed, epoch)``: the same seed and epoch give the same batches.

    Args:
        src_lengths: ``(n,)`` source lengths in tokens.
        tgt_lengths: ``(n,)`` target lengths in tokens (no BOS/EOS).
        max_tokens: the most padded tokens a batch may hold.
        shuffle: shuffle per epoch (training); otherwise batches come in length order.
        seed: the shuffling seed; call :meth:`set_epoch` before each epoch.

    Raises:
        ValueError: a pair alone needs more than ``max_tokens`` (names the first such pair).
    """

    def __init__(
        self,
        src_lengths: Sequence[int] | np.ndarray,
        tgt_lengths: Sequence[int] | np.ndarray,
        max_tokens: int,
        *,
        shuffle: bool,
        seed: int = 0,
    ) -> None:
        src = np.asarray(src_lengths, dtype=np.int64)
        tgt = np.asarray(tgt_lengths, dtype=np.int64)
        if src.ndim != 1 or src.shape != tgt.shape:
            raise ValueError(f"need two 1-D length arrays of one size, got {src.shape} {tgt.shape}")
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        self.sizes = np.maximum(src, tgt + 1)  # (n,) cost of one row
        if (too_long := np.flatnonzero(self.sizes > max_tokens)).size:
            i = int(too_long[0])
            raise ValueError(
                f"sentence pair {i} needs {self.sizes[i]} tokens (source {src[i]}, target "
                f"{tgt[i]} + 1) but max_tokens is {max_tokens} ({too_long.size} "
                f"{'pair is' if too_long.size == 1 else 'pairs are'} too long); "
                "raise max_tokens, or lower max_len to drop long pairs"
            )
        self.max_tokens, self.shuffle, self.seed, self.epoch = max_tokens, shuffle, seed, 0
        self._ends = self._cut(np.sort(self.sizes))  # the same for any order of equal sizes

    def _cut(self, sizes: np.ndarray) -> list[int]:
        """End positions of greedy batches over ascending ``sizes``."""
        ends, start = [], 0
        while start < len(sizes):
            window = sizes[start : start + self.max_tokens // int(sizes[start])]
            fits = window * np.arange(1, len(window) + 1) <= self.max_tokens  # cost grows along
            start += len(window) if fits.all() else int(np.argmin(fits))
            ends.append(start)
        return ends

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order :meth:`__iter__` yields."""
        self.epoch = epoch

    def batches(self) -> list[list[int]]:
        """This epoch's batches, each a list of pair indices."""
        if self.shuffle:
            rng = np.random.default_rng([self.seed, self.epoch])
            perm = rng.permutation(len(self.sizes))
            order = perm[np.argsort(self.sizes[perm], kind="stable")]
        else:
            order = np.argsort(self.sizes, kind="stable")
        batches = [b.tolist() for b in np.split(order, self._ends[:-1])] if len(order) else []
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        return len(self._ends)


def collate(
    dataset: EncodedParallel,
    indices: Sequence[int],
    pad_id: int = 0,
    bos_id: int = 1,
    eos_id: int = 2,
) -> Batch:
    """A teacher-forcing batch: sources as they are, ``tgt_in = BOS + tgt``, ``tgt_out = tgt +
    EOS``, all right-padded with ``pad_id``.

    Returns:
        ``Batch(src (b, s), tgt_in (b, t), tgt_out (b, t))`` of int64, ``t`` = longest target + 1.
    """
    idx = np.asarray(indices, dtype=np.int64)
    if idx.ndim != 1 or idx.size == 0:
        raise ValueError("collate needs a non-empty list of pair indices")
    src_len, tgt_len = dataset.src_lengths[idx], dataset.tgt_lengths[idx]
    src = _padded(dataset.src_data, dataset.src_offsets[idx], src_len, pad_id)  # (b, s)
    tgt = _padded(dataset.tgt_data, dataset.tgt_offsets[idx], tgt_len, pad_id, extra=1)  # (b, t)
    tgt_out = tgt.copy()
    tgt_out[np.arange(len(idx)), tgt_len] = eos_id
    tgt_in = np.concatenate([np.full((len(idx), 1), bos_id), tgt[:, :-1]], axis=1)
    return Batch(*(torch.from_numpy(a) for a in (src, tgt_in, tgt_out)))


def _padded(
    data: np.ndarray, starts: np.ndarray, lengths: np.ndarray, pad_id: int, extra: int = 0
) -> np.ndarray:
    """``(b, max(lengths) + extra)`` int64 rows ``data[start : start + length]``, padded."""
    cols = np.arange(int(lengths.max()) + extra)
    inside = cols < lengths[:, None]  # (b, width)
    positions = np.where(inside, starts[:, None] + cols, 0)
    values = data[positions] if data.size else np.zeros_like(positions)
    return np.where(inside, values, pad_id).astype(np.int64)
