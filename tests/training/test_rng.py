"""RNG states survive a trip through JSON: the same random numbers come out after restoring."""

import json
import random

import numpy as np
import pytest
import torch

from formers.training.rng import capture_rng_state, restore_rng_state


def _draw():
    return (
        torch.rand(4).tolist(),
        torch.randn(3).tolist(),
        [random.random(), random.gauss(0, 1)],
        np.random.rand(3).tolist(),
        np.random.randn(1).tolist(),  # leaves a cached Gaussian in the legacy state
    )


def test_restored_generators_repeat_their_numbers():
    random.gauss(0, 1)  # a pending gauss_next
    np.random.randn(1)  # a pending cached Gaussian
    state = json.loads(json.dumps(capture_rng_state()))
    expected = _draw()
    _draw()
    restore_rng_state(state)
    assert _draw() == expected


def test_the_state_is_plain_json():
    state = capture_rng_state()
    assert json.loads(json.dumps(state)) == state
    assert len(state["torch"]) == torch.get_rng_state().numel()
    assert state["numpy"]["bit_generator"] == "MT19937"


def test_missing_generators_are_left_alone():
    torch.manual_seed(3)
    expected = torch.rand(2)
    torch.manual_seed(3)
    random.seed(0)
    restore_rng_state({"python": capture_rng_state()["python"]})
    assert torch.equal(torch.rand(2), expected)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the warning without CUDA")
def test_cuda_states_without_cuda_warn():
    with pytest.warns(UserWarning, match="CUDA RNG states for 1 device"):
        restore_rng_state({"cuda": [[0] * 16]})
