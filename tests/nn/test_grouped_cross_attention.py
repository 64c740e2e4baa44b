"""Cross-attention caches shared by the rows of a source (beam search's beams): the cache keeps
one row per source and softmax attention reads it once per source; the results equal those of
attending each row over its own copy, and every other reader gets the copies."""

from __future__ import annotations

import pytest
import torch
from inference.helpers import decisive_model

from formers.decoding import beam_search
from formers.nn import MultiHeadAttention, StaticKVCache
from formers.nn.kv_cache import group_queries, ungroup_queries
from formers.nn.masks import lengths_mask

D, H = 16, 4


def _cache(rows: int = 3, heads: int = 2, length: int = 5) -> tuple[StaticKVCache, torch.Tensor]:
    cache = StaticKVCache()
    k = torch.randn(rows, heads, length, 4)
    cache.update(k, -k)
    return cache, k


def test_repeating_each_row_keeps_one_row_per_source():
    cache, k = _cache()
    cache.reorder(torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]))  # beam search's step 0
    grouped_k, grouped_v, group = cache.grouped()
    assert group == 4 and grouped_k is k, "nothing copied"
    assert torch.equal(cache.get()[0], k.repeat_interleave(4, 0))
    assert torch.equal(cache.get()[1], -k.repeat_interleave(4, 0))
    assert cache.get()[0] is cache.get()[0], "the copies are made once per reorder"


def test_reorders_of_a_grouped_cache():
    cache, k = _cache()
    cache.reorder(torch.arange(3).repeat_interleave(4))
    cache.reorder(torch.tensor([1, 0, 3, 3, 8, 8, 9, 11]))  # the first source is done
    assert cache.grouped()[2] == 4 and torch.equal(cache.grouped()[0], k[[0, 2]])
    cache.reorder(torch.tensor([4, 5, 6, 7]))  # the next one too
    assert cache.grouped()[2] == 4 and torch.equal(cache.grouped()[0], k[[2]])
    cache.reorder(torch.tensor([0, 1]))  # fewer rows per source: runs of two
    assert cache.grouped()[2] == 2 and torch.equal(cache.get()[0], k[[2, 2]])


@pytest.mark.parametrize(
    "indices", [[1, 1, 0], [0, 1, 2], [2, 0, 0, 1], [0, 0, 1, 1, 1, 1], [0]],
    ids=["uneven", "identity", "shuffled", "runs of different lengths", "one row"],
)  # fmt: skip
def test_rows_that_are_not_equal_runs_get_their_own_copies(indices):
    cache, k = _cache()
    cache.reorder(torch.arange(3).repeat_interleave(2))  # grouped, then ...
    rows = torch.tensor(indices)
    cache.reorder(rows)  # ... row j continues row indices[j] of the six
    expected = k.repeat_interleave(2, 0)[rows]
    assert torch.equal(cache.get()[0], expected)
    assert torch.equal(cache.get()[1], -expected)


def test_group_queries_and_back():
    q = torch.randn(12, 4, 3, 8)  # 3 sources x 4 beams, 3 query positions
    grouped = group_queries(q, 4)
    assert grouped.shape == (3, 4, 12, 8)
    assert torch.equal(grouped[1, 2, 3:6], q[5, 2])  # source 1, head 2, its second beam
    assert torch.equal(ungroup_queries(grouped, 4), q)


def _attend(kernel: str, num_kv_heads: int, t: int, grouped: bool) -> torch.Tensor:
    torch.manual_seed(0)
    attn = MultiHeadAttention(D, H, num_kv_heads=num_kv_heads, kernel=kernel).eval()
    memory = torch.randn(3, 6, D)
    mask = lengths_mask(torch.tensor([6, 4, 2]), 6)  # (3, 1, 1, 6)
    x = torch.randn(12, t, D)  # 4 rows per source
    cache = StaticKVCache()
    with torch.no_grad():
        attn(x[::4], memory, mask=mask, state=cache)  # fills the cache, one row per source
        rows = torch.arange(3).repeat_interleave(4)
        cache.reorder(rows if grouped else torch.tensor([0, 1, 2, 0, 1, 2] * 2))
        if not grouped:  # the same rows, not in runs: copies for each
            cache.reorder(torch.tensor([0, 3, 6, 9, 1, 4, 7, 10, 2, 5, 8, 11]))
        assert cache.grouped()[2] == (4 if grouped else 1)
        return attn(x, mask=mask.repeat_interleave(4, 0), state=cache)


@pytest.mark.parametrize("kernel", ["sdpa", "eager"])
@pytest.mark.parametrize("num_kv_heads", [4, 1], ids=["mha", "mqa"])
@pytest.mark.parametrize("t", [1, 3])
def test_grouped_cross_attention_equals_a_copy_per_row(kernel, num_kv_heads, t):
    grouped = _attend(kernel, num_kv_heads, t, grouped=True)
    copies = _attend(kernel, num_kv_heads, t, grouped=False)
    torch.testing.assert_close(grouped, copies, rtol=1e-6, atol=1e-6)


@torch.no_grad()
def test_beam_search_shares_the_cross_attention_caches(monkeypatch):
    model = decisive_model()
    src = torch.tensor([[5, 6, 7, 8, 9, 2], [10, 11, 12, 2, 0, 0], [13, 5, 2, 0, 0, 0]])
    groups: list[int] = []
    real = StaticKVCache.reorder

    def spy(self, indices):
        real(self, indices)
        groups.append(self.group)

    monkeypatch.setattr(StaticKVCache, "reorder", spy)
    out = beam_search(model, src, beam_size=3, max_len_a=1.0, max_len_b=5)
    assert groups and set(groups) == {3}, "every reorder of a cross cache kept one row a source"
    assert out.tokens.size(0) == 3
