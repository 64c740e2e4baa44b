"""formers.nn.modes.evaluating: eval mode and no autograd inside, the caller's mode after."""

import pytest
import torch
from torch import nn

from formers.nn.modes import evaluating


def _model() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))


@pytest.mark.parametrize("training", [True, False])
def test_inside_eval_and_inference_mode_then_restored(training: bool) -> None:
    model = _model().train(training)
    with evaluating(model):
        assert not model.training and not model[1].training
        assert torch.is_inference_mode_enabled()
        x = torch.ones(2, 4)
        assert torch.equal(model(x), model(x))  # dropout is off
    assert model.training is training and model[1].training is training
    assert not torch.is_inference_mode_enabled()


def test_restored_when_the_block_raises() -> None:
    model = _model().train()
    with pytest.raises(RuntimeError, match="boom"), evaluating(model):
        raise RuntimeError("boom")
    assert model.training and model[1].training


def test_restored_when_a_generator_is_abandoned() -> None:
    model = _model().train()

    def steps():
        with evaluating(model):
            yield 1
            yield 2

    gen = steps()
    assert next(gen) == 1 and not model.training
    gen.close()
    assert model.training
