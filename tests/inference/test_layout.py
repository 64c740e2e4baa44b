"""use_inference_layout: same function, weights column-major, saving and training still work."""

import copy
import gc
import mmap
import weakref
from pathlib import Path

import pytest
import torch
from torch import nn

from formers.decoding import beam_search, greedy_search
from formers.inference import gemm, layout
from formers.inference.layout import (
    standard_layout,
    use_inference_layout,
    use_standard_layout,
    uses_inference_layout,
)
from formers.training.checkpoint import load_model, load_training_state, save_checkpoint
from formers.training.checkpoint_io import load_weights
from inference.helpers import decisive_model, tiny_gpt, tiny_model

SRC = torch.tensor([[5, 6, 7, 8, 9, 2], [10, 11, 12, 2, 0, 0], [13, 5, 2, 0, 0, 0]])


def _linears(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def test_weights_become_column_major_with_the_same_values_and_stay_tied():
    model = decisive_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert not uses_inference_layout(model)
    assert use_inference_layout(model) is model
    assert uses_inference_layout(model)
    for linear in _linears(model):
        out_features, _ = linear.weight.shape
        assert linear.weight.stride() == (1, out_features)
        assert linear.weight.t().is_contiguous()
    after = model.state_dict()
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), k
    params = {id(p) for p in model.parameters()}
    assert all(id(lin.weight) in params for lin in _linears(model)), "still the same parameters"
    use_inference_layout(model)  # idempotent
    assert uses_inference_layout(model)
    use_standard_layout(model)
    assert not uses_inference_layout(model)
    assert all(lin.weight.is_contiguous() for lin in _linears(model))


def test_a_tied_output_projection_stays_the_embedding():
    model = decisive_model()
    tied = [
        (lin, emb)
        for lin in _linears(model)
        for emb in model.modules()
        if isinstance(emb, nn.Embedding) and emb.weight is lin.weight
    ]
    assert tied, "the tiny transformer ties its output projection to the embedding"
    use_inference_layout(model)
    for lin, emb in tied:
        assert emb.weight is lin.weight
        assert not emb.weight.is_contiguous()


@torch.inference_mode()
def test_greedy_and_beam_outputs_are_identical():
    standard = decisive_model()
    fast = use_inference_layout(copy.deepcopy(standard))
    options = dict(max_len_a=1.0, max_len_b=6)
    a = greedy_search(standard, SRC, **options).tokens
    b = greedy_search(fast, SRC, **options).tokens
    assert torch.equal(a, b)
    assert len({tuple(row.tolist()) for row in a}) == len(SRC), "outputs depend on the source"
    a = beam_search(standard, SRC, beam_size=3, **options).tokens
    b = beam_search(fast, SRC, beam_size=3, **options).tokens
    assert torch.equal(a, b)
    tgt = torch.tensor([[1, 5, 6, 7], [1, 8, 9, 10], [1, 11, 12, 13]])
    torch.testing.assert_close(fast(SRC, tgt), standard(SRC, tgt), rtol=1e-5, atol=1e-5)


@torch.inference_mode()
def test_gpt_logits_and_generation_are_the_same():
    standard = tiny_gpt()
    fast = use_inference_layout(copy.deepcopy(standard))
    assert uses_inference_layout(fast)
    ids = torch.randint(0, 50, (4, 12))
    torch.testing.assert_close(fast(ids), standard(ids), rtol=1e-5, atol=1e-5)


def test_a_converted_model_saves_loads_and_trains(tmp_path):
    model = use_inference_layout(decisive_model())
    config = model.config.to_dict()
    path = save_checkpoint(tmp_path / "ckpt", model, config)
    loaded, _, _ = load_model(path)
    saved, reloaded = model.state_dict(), loaded.state_dict()
    assert saved.keys() == reloaded.keys()
    for k in saved:
        assert torch.equal(saved[k], reloaded[k]), k
    assert all(lin.weight.is_contiguous() for lin in _linears(loaded)), "files hold plain layout"

    # training a converted model: the optimizer's moments follow the weights' layout
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    tgt = torch.tensor([[1, 5, 6, 7], [1, 8, 9, 10], [1, 11, 12, 13]])
    model(SRC, tgt).logsumexp(-1).mean().backward()
    optimizer.step()
    assert uses_inference_layout(model)
    path = save_checkpoint(tmp_path / "step", model, config, optimizer=optimizer, state={"step": 1})
    fresh = decisive_model()
    fresh_optimizer = torch.optim.Adam(fresh.parameters(), lr=1e-3)
    state = load_training_state(path, fresh, fresh_optimizer)
    assert state["step"] == 1
    for p, q in zip(model.parameters(), fresh.parameters(), strict=True):
        assert torch.equal(p, q)


def test_weights_on_other_devices_are_left_alone():
    model = decisive_model()
    first, second = _linears(model)[:2]
    first.weight = nn.Parameter(torch.empty(first.weight.shape, device="meta"))
    use_inference_layout(model)
    assert first.weight.is_contiguous(), "a non-CPU weight keeps its layout"
    assert not second.weight.is_contiguous()


def test_loading_into_a_converted_model_keeps_its_layout(tmp_path):
    source = decisive_model()
    path = save_checkpoint(tmp_path / "ckpt", source, source.config.to_dict())
    target = tiny_model(vocab_size=40, seed=9, d_model=32, d_ff=64, num_heads=4)
    use_inference_layout(target)
    load_weights(target, path / "model.safetensors")
    assert uses_inference_layout(target)
    for p, q in zip(source.parameters(), target.parameters(), strict=True):
        assert torch.equal(p, q)


def test_converted_weights_share_one_block_each_on_a_cache_line():
    model = use_inference_layout(decisive_model())
    weights = [lin.weight for lin in _linears(model)]
    assert len({w.untyped_storage().data_ptr() for w in weights}) == 1, "one block"
    assert all(w.data_ptr() % layout._LINE == 0 for w in weights)
    starts = sorted({w.data_ptr() for w in weights})
    assert len(starts) == len({id(w) for w in weights}), "no two weights overlap at the start"


def _advised_huge(address: int) -> bool:
    """Whether the mapping holding ``address`` carries the huge-page advice (``hg``)."""
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()[0]
        if "-" in head and not head.endswith(":"):
            low, high = (int(x, 16) for x in head.split("-"))
            inside = low <= address < high
        elif inside and head == "VmFlags:":
            return "hg" in line.split()[1:]
    raise AssertionError(f"no mapping holds {address:#x}")


linux_only = pytest.mark.skipif(
    not hasattr(mmap, "MADV_HUGEPAGE") or not Path("/proc/self/smaps").exists(),
    reason="huge-page advice is a Linux feature",
)


@linux_only
def test_huge_page_memory_is_aligned_advised_and_outlives_its_mapping_name():
    memory = layout._huge_page_memory(3 * layout._HUGE_PAGE + 5)
    assert memory.numel() == 3 * layout._HUGE_PAGE + 5
    assert memory.data_ptr() % layout._HUGE_PAGE == 0
    assert _advised_huge(memory.data_ptr())
    memory.fill_(7)
    gc.collect()  # the mmap object has no name left; the tensor keeps it mapped
    assert int(memory[-1]) == 7 and int(memory.sum()) == 7 * memory.numel()
    small = layout._huge_page_memory(1000)
    assert not _advised_huge(small.data_ptr()), "below one huge page: ordinary memory"


@linux_only
@torch.inference_mode(False)
def test_a_model_in_huge_page_memory_decodes_saves_copies_and_trains(monkeypatch, tmp_path):
    """The tiny model's weights are far below a huge page: with the threshold lowered to one
    page they take the mapped, advised path that a base-sized model takes."""
    monkeypatch.setattr(layout, "_HUGE_PAGE", mmap.PAGESIZE)
    standard = decisive_model()
    model = use_inference_layout(copy.deepcopy(standard))
    assert _advised_huge(_linears(model)[0].weight.data_ptr())
    options = dict(max_len_a=1.0, max_len_b=6)
    with torch.inference_mode():
        expected = greedy_search(standard, SRC, **options).tokens
        assert torch.equal(greedy_search(model, SRC, **options).tokens, expected)
        twin = copy.deepcopy(model)
        assert torch.equal(greedy_search(twin, SRC, **options).tokens, expected)
    loaded, _, _ = load_model(save_checkpoint(tmp_path / "ckpt", model, model.config.to_dict()))
    for p, q in zip(standard.parameters(), loaded.parameters(), strict=True):
        assert torch.equal(p, q)
    with standard_layout(model):
        assert all(lin.weight.is_contiguous() for lin in _linears(model))
    assert _advised_huge(_linears(model)[0].weight.data_ptr()), "back in a block afterwards"
    model.train()
    tgt = torch.tensor([[1, 5, 6, 7], [1, 8, 9, 10], [1, 11, 12, 13]])
    model(SRC, tgt).logsumexp(-1).mean().backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert not torch.equal(_linears(model)[0].weight, _linears(standard)[0].weight)


@linux_only
def test_huge_pages_can_be_left_out(monkeypatch):
    monkeypatch.setattr(layout, "_HUGE_PAGE", mmap.PAGESIZE)
    model = use_inference_layout(decisive_model(), huge_pages=False)
    assert uses_inference_layout(model)
    assert not _advised_huge(_linears(model)[0].weight.data_ptr())
    with standard_layout(model):  # as a checkpoint save does
        pass
    assert uses_inference_layout(model)
    assert not _advised_huge(_linears(model)[0].weight.data_ptr()), "still not in huge pages"
    twin = copy.deepcopy(model)  # a copy keeps the choice
    with standard_layout(twin):
        pass
    assert uses_inference_layout(twin)
    assert not _advised_huge(_linears(twin)[0].weight.data_ptr()), "the copy: not in huge pages"
    assert torch.equal(_linears(twin)[0].weight, _linears(model)[0].weight)


@torch.inference_mode()
def test_standard_layout_lets_go_of_the_numpy_views_of_the_old_weights(monkeypatch):
    """NumPy's products keep views of their weights on the layer; each holds its storage, so
    after ``standard_layout`` (a checkpoint save) the views of the replaced block must go, and
    the products still compute with the weights as they are now."""
    monkeypatch.setattr(gemm, "NUMPY_MIN_WEIGHTS", 0)  # the tiny layers multiply in NumPy
    model = use_inference_layout(decisive_model(), "numpy")
    layer = _linears(model)[0]
    assert type(layer) is gemm.NumpyLinear
    x = torch.randn(1, layer.in_features)
    layer(x)  # its views are made now
    old = [weakref.ref(view) for view in gemm._numpy_views(layer) if view is not None]
    with standard_layout(model):
        pass
    gc.collect()
    assert all(ref() is None for ref in old), "the old block's views are gone"
    expected = torch.nn.functional.linear(x, layer.weight, layer.bias)
    torch.testing.assert_close(layer(x), expected)
