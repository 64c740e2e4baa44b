"""Losses against PyTorch's own label-smoothed cross-entropy."""

import pytest
import torch
import torch.nn.functional as F

from formers.training.losses import sequence_cross_entropy, smoothed_nll, summed_cross_entropy


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_smoothed_nll_equals_torch_cross_entropy(eps):
    logits = torch.randn(3, 5, 11, requires_grad=True)
    target = torch.randint(3, 11, (3, 5))
    target[1, 3:] = 0  # padding
    loss, nll, n = smoothed_nll(logits, target, pad_id=0, label_smoothing=eps)
    ref = F.cross_entropy(
        logits.flatten(0, 1), target.flatten(), ignore_index=0, label_smoothing=eps,
        reduction="sum",
    )  # fmt: skip
    ref_nll = F.cross_entropy(
        logits.flatten(0, 1), target.flatten(), ignore_index=0, reduction="sum"
    )
    assert n == 13
    torch.testing.assert_close(loss, ref, atol=1e-5, rtol=1e-6)
    torch.testing.assert_close(nll, ref_nll, atol=1e-5, rtol=1e-6)
    (g1,) = torch.autograd.grad(loss, logits)
    (g2,) = torch.autograd.grad(ref, logits)
    torch.testing.assert_close(g1, g2, atol=1e-6, rtol=1e-5)


def test_sequence_cross_entropy_mean_and_sum():
    logits = torch.randn(2, 4, 7)
    target = torch.tensor([[3, 4, 5, 0], [6, 0, 0, 0]])
    total = sequence_cross_entropy(logits, target, 0, 0.1, reduction="sum")
    mean = sequence_cross_entropy(logits, target, 0, 0.1)
    torch.testing.assert_close(total / 4, mean)


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_summed_cross_entropy_is_the_summed_smoothed_loss_and_nll(eps):
    logits = torch.randn(7, 11, requires_grad=True)
    labels = torch.randint(0, 11, (7,))
    labels[2] = -100  # nothing to predict here (e.g. an unmasked position)
    loss, nll = summed_cross_entropy(logits, labels, eps)
    ref = F.cross_entropy(logits, labels, label_smoothing=eps, reduction="sum")
    torch.testing.assert_close(loss, ref)
    torch.testing.assert_close(nll, F.cross_entropy(logits, labels, reduction="sum"))
    assert not nll.requires_grad
