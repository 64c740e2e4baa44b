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


@pytest.mark.parametrize("training", [(True, True), (True, False), (False, False)])
def test_eval_mode_switches_only_what_trains_and_restores_it(training) -> None:
    from formers.nn.modes import eval_mode

    model, heads = _model().train(training[0]), _model().train(training[1])
    calls = []
    for m in (model, heads):  # eval() is the costly walk: it must happen only where needed
        m.eval = lambda m=m: (calls.append(m), nn.Module.eval(m))[1]
    with pytest.raises(RuntimeError, match="boom"), eval_mode(model, heads):
        assert not model.training and not model[1].training and not heads[1].training
        raise RuntimeError("boom")
    assert calls == [m for m, t in zip((model, heads), training, strict=True) if t]
    assert (model.training, model[1].training) == (training[0], training[0])
    assert (heads.training, heads[1].training) == (training[1], training[1])
