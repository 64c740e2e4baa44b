"""Key/value caches for incremental decoding.

During autoregressive decoding a decoder layer sees one new target token per step. Its masked
self-attention needs the keys and values of every earlier step (:class:`KVCache`, which grows),
and its encoder-decoder attention needs the keys and values of the encoder output, which never
change for a given source (:class:`StaticKVCache`, filled once per source).

Beam search reorders hypotheses between steps; :meth:`reorder` applies the same permutation to
the cached batch dimension.

The caches write into preallocated storage in place, so they are for inference (run decoding under
:func:`torch.no_grad`, as :mod:`formers.decoding` does); training uses full teacher-forced passes.

Shapes: b batch (times beams), g key/value heads, t cached length, d head dim.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


class KVCache:
    """Self-attention cache that grows by the new steps; storage doubles when full.

    Args:
        capacity: initial number of positions to allocate (grown on demand).
    """

    complete = False  # keys/values of new tokens must always be computed and appended

    def __init__(self, capacity: int = 64) -> None:
        self._initial_capacity = capacity
        self._k: Tensor | None = None
        self._v: Tensor | None = None
        self.length = 0

    def _reserve(self, k: Tensor, needed: int) -> None:
        if self._k is None:
            capacity = max(self._initial_capacity, needed)
            b, g, _, d = k.shape
            self._k = k.new_empty(b, g, capacity, d)
            self._v = k.new_empty(b, g, capacity, d)
        elif needed > self._k.size(2):
            capacity = max(needed, 2 * self._k.size(2))
            grow = capacity - self._k.size(2)
            pad = self._k.new_empty(*self._k.shape[:2], grow, self._k.size(3))
            self._k = torch.cat([self._k, pad], dim=2)
            self._v = torch.cat([self._v, pad.clone()], dim=2)

    def update(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Append ``(b, g, t_new, d)`` keys and values; return all cached ``(b, g, t, d)``."""
        end = self.length + k.size(2)
        self._reserve(k, end)
        self._k[:, :, self.length : end] = k
        self._v[:, :, self.length : end] = v
        self.length = end
        return self._k[:, :, :end], self._v[:, :, :end]

    def reorder(self, indices: Tensor) -> None:
        """Select batch rows (beam reordering): ``indices`` of shape ``(b_new,)``.

        Only the filled positions are copied: beam search reorders every step, and copying the
        whole preallocated capacity would cost several times more than the attention itself.
        On a CPU, when the batch keeps its size and at most a third of its rows change (a beam
        step in which most beams continue themselves), only those rows are copied, in place;
        otherwise all are, into new storage of the same capacity. Moving a row in place copies
        it twice, to gather the sources before any is overwritten: on one core of the 2-core
        EPYC, for 128 rows of 8 heads x 16 positions x 64 (a one-off measurement), 0.7 / 1.2 /
        2.0 ms when 1/8, 1/4 and 1/2 of them moved, 0.2 ms when none did, against 1.6-1.9 ms
        for copying all. On a GPU the copy is cheap and counting the rows that move would wait
        for the device at every layer (not measured), so all are copied there. The keys and
        values that :meth:`update` returned before a reorder may therefore change with it: use
        them within the step.
        """
        if self._k is None:
            return
        if indices.device.type == "cpu" and indices.numel() == self._k.size(0):
            moved = (indices != torch.arange(indices.numel(), device=indices.device)).nonzero()
            if 3 * moved.numel() <= indices.numel():
                self._move(moved.view(-1), indices)
                return
        self._k, self._v = (self._select(x, indices) for x in (self._k, self._v))

    def _move(self, rows: Tensor, indices: Tensor) -> None:
        """Each row ``r`` in ``rows`` takes the content of row ``indices[r]``, in place. The
        sources are gathered before any row is written, so rows that swap, or one copied into
        two, come out right."""
        if rows.numel() == 0:
            return
        sources = indices.index_select(0, rows)
        for x in (self._k, self._v):
            filled = x[:, :, : self.length]  # (b, g, t, d), a view of the storage
            filled.index_copy_(0, rows, filled.index_select(0, sources))

    def _select(self, x: Tensor, indices: Tensor) -> Tensor:
        out = x.new_empty(indices.numel(), *x.shape[1:])  # (b_new, g, capacity, d)
        filled = slice(0, self.length)
        torch.index_select(x[:, :, filled], 0, indices, out=out[:, :, filled])
        return out


class StaticKVCache:
    """Cross-attention cache: keys and values projected once from the encoder output.

    Rows that decode the same source share one cached row: after a reorder that repeats each
    source for ``group`` consecutive rows (beam search's first step, or a later one that drops
    finished sources), the cache keeps one row per source and records ``group``. Softmax
    attention then attends each source's ``group`` rows of queries as one row of ``group``
    queries over its keys (:func:`group_queries`): the keys and values are read once per source
    rather than once per beam (4x less memory to stream at beam 4). :meth:`get` gives every
    other mechanism the keys and values of each row, repeated (made once per reorder).
    """

    def __init__(self) -> None:
        self.k: Tensor | None = None
        self.v: Tensor | None = None
        self.group = 1  # consecutive rows per cached row
        self._repeated: tuple[Tensor, Tensor] | None = None

    @property
    def complete(self) -> bool:
        return self.k is not None

    @property
    def length(self) -> int:
        return 0 if self.k is None else self.k.size(2)

    def update(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        self.k, self.v, self.group, self._repeated = k, v, 1, None
        return k, v

    def get(self) -> tuple[Tensor, Tensor]:
        """``(b, g, s, d)`` keys and values, one row per decoding row."""
        k, v, group = self.grouped()
        if group == 1:
            return k, v
        if self._repeated is None:
            self._repeated = (k.repeat_interleave(group, 0), v.repeat_interleave(group, 0))
        return self._repeated

    def grouped(self) -> tuple[Tensor, Tensor, int]:
        """``(b / group, g, s, d)`` keys and values and ``group``: cached row ``i`` serves
        decoding rows ``i * group`` to ``i * group + group - 1``."""
        if self.k is None or self.v is None:
            raise RuntimeError("cross-attention cache is empty: run the first decoding step")
        return self.k, self.v, self.group

    def reorder(self, indices: Tensor) -> None:
        """Decoding row ``j`` continues row ``indices[j]``: keep the cached row of each, one per
        run of rows that share it when every run has the same length (module docstring)."""
        if self.k is None:
            return
        rows = indices // self.group  # (b_new,): the cached row of each new row
        kept, self.group = _runs(rows)
        if not torch.equal(kept, torch.arange(self.k.size(0), device=kept.device)):
            self.k, self.v = self.k.index_select(0, kept), self.v.index_select(0, kept)
        self._repeated = None


def _runs(rows: Tensor) -> tuple[Tensor, int]:
    """``(rows[::n], n)`` when ``rows`` is runs of ``n`` equal values, ``n`` the length of the
    first run; else ``(rows, 1)``."""
    if rows.numel() < 2:
        return rows, 1
    other = (rows != rows[0]).nonzero()
    n = rows.numel() if other.numel() == 0 else int(other[0])
    if n > 1 and rows.numel() % n == 0:
        starts = rows[::n]
        if torch.equal(rows.view(-1, n), starts[:, None].expand(-1, n)):
            return starts, n
    return rows, 1


def group_queries(q: Tensor, group: int) -> Tensor:
    """``(b, h, t, d)`` -> ``(b / group, h, group * t, d)``: the queries of each ``group``
    consecutive rows as one row (for cross-attention over a :class:`StaticKVCache` with that
    ``group``; its queries attend independently of each other, so they may share a row)."""
    b, h, t, d = q.shape
    rows = q.view(b // group, group, h, t, d).transpose(1, 2)  # (b / group, h, group, t, d)
    return rows.reshape(b // group, h, group * t, d)


def group_mask(mask: Tensor | None, group: int, rows: int) -> Tensor | None:
    """A ``(rows | 1, ...)`` mask for :func:`group_queries`' rows: the first row of each group
    (the rows of a group share a source, so their masks over its keys are the same)."""
    return mask[::group] if mask is not None and mask.size(0) == rows else mask


def ungroup_queries(out: Tensor, group: int) -> Tensor:
    """:func:`group_queries` undone: ``(b / group, h, group * t, d)`` -> ``(b, h, t, d)``."""
    m, h, gt, d = out.shape
    rows = out.view(m, h, group, gt // group, d).transpose(1, 2)  # (m, group, h, t, d)
    return rows.reshape(m * group, h, gt // group, d)


@dataclass
class LayerCache:
    """The caches of one decoder layer."""

    self_attn: KVCache = field(default_factory=KVCache)
    cross_attn: StaticKVCache | None = None

    def reorder(self, indices: Tensor, *, cross: bool = True) -> None:
        """Select batch rows; ``cross=False`` leaves the cross-attention cache as it is (for
        reorders that keep each row's source, whose memory is the same)."""
        self.self_attn.reorder(indices)
        if cross and self.cross_attn is not None:
            self.cross_attn.reorder(indices)


@dataclass
class DecoderCache:
    """The caches of a whole decoder stack, one :class:`LayerCache` per layer, and what all
    layers share about the cached keys: which are real (not padding) and their positions.

    A batch of padded prompts (left or right) decodes with one cache: :meth:`extend` records the
    new tokens' padding and gives each row's tokens their own positions (a row's first real
    token is at 0, whatever padding precedes it), so that every row decodes as it would alone.

    Attributes:
        layers: the per-layer states.
        keys: ``(b, t)`` True at real cached keys; ``None`` while all are real.
        positions: ``(b, t)`` positions of the cached keys; ``None`` while they are ``0 .. t-1``.
    """

    layers: list[LayerCache]
    keys: Tensor | None = None
    positions: Tensor | None = None

    @classmethod
    def empty(cls, num_layers: int, cross_attention: bool) -> DecoderCache:
        """Softmax attention's caches (a decoder makes its own with ``Decoder.new_cache``,
        asking each layer's mechanisms)."""
        return cls(
            [
                LayerCache(KVCache(), StaticKVCache() if cross_attention else None)
                for _ in range(num_layers)
            ]
        )

    @property
    def length(self) -> int:
        """Number of positions (slots, padding included) already decoded."""
        return self.layers[0].self_attn.length if self.layers else 0

    def extend(self, real: Tensor | None, length: int, device: torch.device) -> tuple[
        Tensor | None, Tensor | None, Tensor | None
    ]:  # fmt: skip
        """Record ``length`` new tokens (``real``: ``(b, length)``, True at non-padding ones;
        ``None``: all real); return ``(keys, query positions, key positions)``: the padding of
        all keys ``(b, t)``, the new tokens' positions ``(b, length)`` and those of all keys
        ``(b, t)``, or ``None`` for each while nothing is padded (positions are then the slots).
        """
        cached = self.length
        if real is None and self.keys is None:
            return None, None, None
        b = (real if real is not None else self.keys).size(0)
        if real is None:
            real = torch.ones(b, length, dtype=torch.bool, device=device)
        before = self.keys if self.keys is not None else real.new_ones(b, cached)
        known = self.positions if self.positions is not None else row_positions(before)
        start = before.sum(dim=1, keepdim=True)  # (b, 1): real tokens so far
        new = (start + real.long().cumsum(dim=1) - 1).clamp(min=0)  # (b, length)
        self.keys = torch.cat([before, real], dim=1)
        self.positions = torch.cat([known, new], dim=1)
        return self.keys, new, self.positions

    def reorder(self, indices: Tensor, *, cross: bool = True) -> None:
        for layer in self.layers:
            layer.reorder(indices, cross=cross)
        if self.keys is not None:
            self.keys = self.keys.index_select(0, indices)
            self.positions = self.positions.index_select(0, indices)


def row_positions(real: Tensor) -> Tensor:
    """Each row's positions from its padding mask ``(b, t)``: real tokens are numbered from 0
    in order; a padding token gets the position of the last real one before it (or 0). The
    padding is never attended to, so its positions do not matter."""
    return (real.long().cumsum(dim=1) - 1).clamp(min=0)


def padded_self_attention(
    mask: Tensor | None, cache: DecoderCache | None, length: int, device: torch.device
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """``(keys, query positions, key positions)`` for ``length`` new tokens whose padding is
    ``mask`` (``(b, length)``, True at real tokens; ``None``: all real), after those in
    ``cache`` (recorded there, :meth:`DecoderCache.extend`): the padding of all keys and each
    row's own positions, or ``None`` for each while nothing is padded (positions are then the
    slots)."""
    if cache is not None:
        return cache.extend(mask, length, device)
    positions = None if mask is None else row_positions(mask)
    return mask, positions, positions
