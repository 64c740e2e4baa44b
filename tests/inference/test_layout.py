"""use_inference_layout: same function, weights column-major, saving and training still work."""

import copy

import torch
from torch import nn

from formers.decoding import beam_search, greedy_search
from formers.inference.layout import (
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
