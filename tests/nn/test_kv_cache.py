"""KV caches, and incremental attention/decoding with them against the full causal forward."""

from __future__ import annotations

import pytest
import torch

from formers.models.transformer.builders import build_decoder
from formers.models.transformer.config import TransformerConfig
from formers.nn import (
    AttentionRecorder,
    DecoderCache,
    KVCache,
    MultiHeadAttention,
    RotaryEmbedding,
    StaticKVCache,
)
from formers.nn.masks import lengths_mask

D, H = 16, 4
TOL = 1e-5
STEPS = [1, 2, 1, 3, 1, 1]  # varied step sizes: a prompt chunk, single tokens, ...


def _chunks(total_steps):
    start = 0
    for size in total_steps:
        yield start, start + size
        start += size


def test_kv_cache_grows_across_doublings():
    cache = KVCache(capacity=2)
    sizes = [1, 1, 3, 1, 5, 2, 1, 8, 1]
    ks, vs, capacities = [], [], set()
    for size in sizes:
        k, v = torch.randn(2, 3, size, 4), torch.randn(2, 3, size, 4)
        ks.append(k)
        vs.append(v)
        all_k, all_v = cache.update(k, v)
        assert torch.equal(all_k, torch.cat(ks, dim=2))
        assert torch.equal(all_v, torch.cat(vs, dim=2))
        assert cache.length == sum(t.size(2) for t in ks)
        capacities.add(cache._k.size(2))
    assert len(capacities) >= 4  # the storage really was reallocated several times


def test_kv_cache_keeps_values_apart_from_keys():
    cache = KVCache(capacity=1)
    for _ in range(3):  # growth must not make keys and values share storage
        k, v = cache.update(torch.zeros(1, 1, 1, 2), torch.ones(1, 1, 1, 2))
    assert torch.equal(k, torch.zeros(1, 1, 3, 2))
    assert torch.equal(v, torch.ones(1, 1, 3, 2))


def test_kv_cache_reorder_selects_rows():
    cache = KVCache(capacity=2)
    k1, v1 = torch.randn(3, 2, 3, 4), torch.randn(3, 2, 3, 4)
    cache.update(k1, v1)
    indices = torch.tensor([2, 0, 0, 1])  # beams can be dropped, kept, or duplicated
    cache.reorder(indices)
    k2, v2 = torch.randn(4, 2, 2, 4), torch.randn(4, 2, 2, 4)
    all_k, all_v = cache.update(k2, v2)
    assert torch.equal(all_k, torch.cat([k1[indices], k2], dim=2))
    assert torch.equal(all_v, torch.cat([v1[indices], v2], dim=2))
    assert cache.length == 5


def test_empty_kv_cache_reorder_is_a_no_op():
    cache = KVCache()
    cache.reorder(torch.tensor([0, 0]))
    assert cache.length == 0


def test_static_cache_projects_memory_once():
    attn = MultiHeadAttention(D, H)
    calls = {"k": 0, "v": 0}
    attn.k_proj.register_forward_hook(lambda *_: calls.__setitem__("k", calls["k"] + 1))
    attn.v_proj.register_forward_hook(lambda *_: calls.__setitem__("v", calls["v"] + 1))
    memory = torch.randn(2, 7, D)
    cache = StaticKVCache()
    assert not cache.complete and cache.length == 0
    with pytest.raises(RuntimeError, match="empty"):
        cache.get()
    with torch.no_grad():
        x = torch.randn(2, 3, D)
        full = attn(x, memory)
        outs = [attn(x[:, i : i + 1], memory, state=cache) for i in range(3)]
    assert calls == {"k": 2, "v": 2}  # once for `full`, once for the cached steps
    assert cache.complete and cache.length == 7
    assert (torch.cat(outs, dim=1) - full).abs().max() <= TOL
    k, v = cache.get()
    assert k.shape == v.shape == (2, H, 7, D // H)


def test_static_cache_reorder():
    cache = StaticKVCache()
    k, v = torch.randn(2, 1, 3, 4), torch.randn(2, 1, 3, 4)
    cache.update(k, v)
    cache.reorder(torch.tensor([1, 1, 0]))
    assert torch.equal(cache.get()[0], k[[1, 1, 0]])
    assert torch.equal(cache.get()[1], v[[1, 1, 0]])


@pytest.mark.parametrize("num_kv_heads", [4, 2, 1], ids=["mha", "gqa", "mqa"])
@pytest.mark.parametrize("rotary", [False, True], ids=["no-rope", "rope"])
@pytest.mark.parametrize("kernel", ["sdpa", "eager"])
def test_incremental_attention_equals_full_causal(kernel, rotary, num_kv_heads):
    rope = RotaryEmbedding(D // H, max_len=4) if rotary else None  # short table: also on the fly
    attn = MultiHeadAttention(D, H, num_kv_heads, kernel=kernel, positions=rope).eval()
    x = torch.randn(2, sum(STEPS), D)
    cache = KVCache(capacity=2)
    with torch.no_grad():
        full = attn(x, causal=True)
        for start, end in _chunks(STEPS):
            step = attn(x[:, start:end], causal=True, state=cache)
            assert cache.length == end
            assert (step - full[:, start:end]).abs().max() <= TOL, (start, end)


@pytest.mark.parametrize("kernel", ["sdpa", "eager"])
def test_incremental_attention_with_key_padding(kernel):
    """Left-padded prompts: the padding mask of all positions so far, sliced per step."""
    attn = MultiHeadAttention(D, H, 2, kernel=kernel, positions=RotaryEmbedding(D // H)).eval()
    total = sum(STEPS)
    x = torch.randn(2, total, D)
    keep = torch.ones(2, 1, 1, total, dtype=torch.bool)
    keep[1, ..., :2] = False  # sequence 1 starts with two padding positions
    cache = KVCache()
    with torch.no_grad():
        full = attn(x, mask=keep, causal=True)
        for start, end in _chunks(STEPS):
            step = attn(x[:, start:end], mask=keep[..., :end], causal=True, state=cache)
            assert (step - full[:, start:end]).abs().max() <= TOL, (start, end)


def test_incremental_weights_equal_full_causal_weights():
    attn = MultiHeadAttention(D, H).eval()
    x = torch.randn(1, 5, D)
    cache = KVCache()
    with torch.no_grad():
        with AttentionRecorder(attn) as recorder:
            attn(x, causal=True)
        full = recorder.last(attn)
        for start, end in _chunks([2, 1, 2]):
            with AttentionRecorder(attn) as recorder:
                attn(x[:, start:end], causal=True, state=cache)
            w = recorder.last(attn)
            assert w.shape == (1, H, end - start, end)
            assert (w - full[:, :, start:end, :end]).abs().max() <= TOL


def _decoder(positions: str, kv_heads: int | None, norm_first: bool):
    cfg = TransformerConfig(
        vocab_size=11,
        d_model=D,
        num_heads=H,
        num_kv_heads=kv_heads,
        d_ff=32,
        num_encoder_layers=1,
        num_decoder_layers=2,
        dropout=0.0,
        positions=positions,
        norm_first=norm_first,
    )
    return build_decoder(cfg).eval()


@pytest.mark.parametrize(
    ("positions", "kv_heads", "norm_first"),
    [("sinusoidal", None, False), ("rotary", 2, True), ("rotary", 1, False)],
)
def test_incremental_decoder_equals_full(positions, kv_heads, norm_first):
    decoder = _decoder(positions, kv_heads, norm_first)
    b, s = 3, 6
    memory = torch.randn(b, s, D)
    memory_mask = lengths_mask(torch.tensor([6, 3, 1]), s)
    tgt = torch.randn(b, sum(STEPS), D)
    cache = decoder.new_cache()
    with torch.no_grad():
        full = decoder(tgt, memory, memory_mask=memory_mask)
        for i, (start, end) in enumerate(_chunks(STEPS)):
            step = decoder(
                tgt[:, start:end],
                memory if i == 0 else None,  # after the first step the memory is cached
                memory_mask=memory_mask,
                cache=cache,
            )
            assert cache.length == end
            assert (step - full[:, start:end]).abs().max() <= TOL, (start, end)


def test_decoder_cache_reorder_equals_reordered_full_forward():
    """Beam search: reorder the caches mid-sequence; continuing must equal a full forward over
    the reordered histories."""
    decoder = _decoder("rotary", 2, False)
    b, s, t = 2, 5, 6
    memory = torch.randn(b, s, D)
    memory_mask = lengths_mask(torch.tensor([5, 2]), s)
    tgt = torch.randn(b, t, D)
    indices = torch.tensor([1, 0, 1])
    cache = decoder.new_cache()
    with torch.no_grad():
        decoder(tgt[:, :3], memory, memory_mask=memory_mask, cache=cache)
        cache.reorder(indices)
        new_tgt = torch.randn(3, t - 3, D)  # each beam continues differently
        step = decoder(new_tgt, None, memory_mask=memory_mask[indices], cache=cache)
        history = torch.cat([tgt[indices, :3], new_tgt], dim=1)
        full = decoder(history, memory[indices], memory_mask=memory_mask[indices])
    assert (step - full[:, 3:]).abs().max() <= TOL


def test_the_decoder_cache_keeps_padding_and_positions_and_reorders_them():
    cache = DecoderCache.empty(num_layers=1, cross_attention=False)
    assert cache.extend(None, 3, torch.device("cpu")) == (None, None, None)  # nothing padded
    cache.layers[0].self_attn.update(torch.zeros(2, 1, 3, 4), torch.zeros(2, 1, 3, 4))
    real = torch.tensor([[False, True], [True, True]])  # row 0: one padding token
    keys, queries, positions = cache.extend(real, 2, torch.device("cpu"))
    assert keys.tolist() == [[True, True, True, False, True], [True] * 5]
    assert queries.tolist() == [[2, 3], [3, 4]]
    assert positions.tolist() == [[0, 1, 2, 2, 3], [0, 1, 2, 3, 4]]
    cache.layers[0].self_attn.update(torch.zeros(2, 1, 2, 4), torch.zeros(2, 1, 2, 4))
    cache.reorder(torch.tensor([1, 1, 0]))
    assert cache.keys.tolist()[2] == [True, True, True, False, True]
    assert cache.positions.tolist()[0] == [0, 1, 2, 3, 4]
    _, queries, _ = cache.extend(None, 1, torch.device("cpu"))
    assert queries.tolist() == [[5], [5], [4]]  # each row's next position


@pytest.mark.parametrize(
    "indices",
    [
        [0, 1, 2, 3, 4, 5],  # nothing moves (every beam continued itself)
        [1, 0, 2, 3, 4, 5],  # two rows swap, in place
        [0, 0, 2, 3, 5, 5],  # two rows copied from others, in place
        [5, 4, 3, 2, 1, 0],  # every row moves: new storage
        [1, 1, 1, 3, 4, 5],  # more than a third move: new storage
    ],
)
def test_kv_cache_reorder_of_the_same_batch_size(indices):
    """A reorder that keeps the batch size (a beam step) copies the rows that move, in place when
    they are at most a third: the result equals selecting the rows, swaps and duplicates
    included, and the rows that stay keep their values."""
    cache = KVCache(capacity=8)
    k1, v1 = torch.randn(6, 2, 3, 4), torch.randn(6, 2, 3, 4)
    cache.update(k1, v1)
    storage = cache._k.data_ptr()
    index = torch.tensor(indices)
    cache.reorder(index)
    moved = int((index != torch.arange(6)).sum())
    assert (cache._k.data_ptr() == storage) == (3 * moved <= 6)  # in place only when few move
    k2, v2 = torch.randn(6, 2, 1, 4), torch.randn(6, 2, 1, 4)
    all_k, all_v = cache.update(k2, v2)
    assert torch.equal(all_k, torch.cat([k1[index], k2], dim=2))
    assert torch.equal(all_v, torch.cat([v1[index], v2], dim=2))
