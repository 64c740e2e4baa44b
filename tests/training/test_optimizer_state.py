"""Optimizer state without pickle comes back identical, types and dtypes included."""

import json

import pytest
import torch

from formers.training.checkpoint import CheckpointError
from formers.training.optimizer_state import (
    flatten_state,
    load_optimizer_state,
    save_optimizer_state,
    unflatten_state,
)
from training.checkpoint_helpers import adam_with_schedule, assert_same_tree, tiny_model, train_step


def test_adam_state_round_trips_exactly(tmp_path):
    model = tiny_model()
    optimizer, scheduler = adam_with_schedule(model)
    for _ in range(2):
        train_step(model, optimizer, scheduler)
    saved = optimizer.state_dict()
    save_optimizer_state(saved, tmp_path)
    loaded = load_optimizer_state(tmp_path)
    assert_same_tree(loaded, saved)
    assert isinstance(loaded["param_groups"][0]["betas"], tuple)
    assert loaded["state"][0]["step"].dim() == 0

    tree = json.loads((tmp_path / "optimizer.json").read_text())
    assert tree["state"]["__items__"][0][1]["exp_avg"] == {"__tensor__": "state.0.exp_avg"}


def test_unusual_trees_round_trip():
    tree = {
        "state": {3: {"step": 5, "buf": torch.arange(4, dtype=torch.bfloat16)}},
        "groups": [{"betas": (0.9, (1, None)), "lr": 1e-3, "flag": True, "name": "x"}],
        "looks_like_a_marker": {"__tensor__": "not a tensor"},
        "a.b": torch.ones(1),
        "a": {"b": torch.zeros(1)},
        "scalar": torch.tensor(2.5, dtype=torch.float64),
        1.5: "float key",
    }
    flat, tensors = flatten_state(tree)
    assert all(t.device.type == "cpu" for t in tensors.values())
    assert_same_tree(unflatten_state(json.loads(json.dumps(flat)), tensors), tree)


def test_objects_that_would_need_pickle_are_refused():
    with pytest.raises(CheckpointError, match="state at state.0.fn is a function"):
        flatten_state({"state": {"0": {"fn": lambda step: step}}})
