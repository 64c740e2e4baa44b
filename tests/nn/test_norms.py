"""Norms against their formulas, and the two "Add & Norm" arrangements."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from formers.nn import PostNormResidual, PreNormResidual, make_norm

D = 8


def _randomize(module):
    with torch.no_grad():
        for p in module.parameters():
            p.normal_()


@pytest.mark.parametrize("eps", [1e-5, 1e-2])
def test_rmsnorm_formula(eps):
    norm = make_norm("rmsnorm", D, eps=eps)
    _randomize(norm)
    x = torch.randn(2, 5, D)
    expected = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * norm.weight
    assert torch.allclose(norm(x), expected, rtol=1e-5, atol=1e-6)
    # RMSNorm does not subtract the mean: a constant row keeps its sign
    assert (norm(torch.ones(1, D)) * norm.weight.sign() > 0).all()


@pytest.mark.parametrize("eps", [1e-5, 1e-2])
def test_layernorm_formula(eps):
    norm = make_norm("layernorm", D, eps=eps)
    _randomize(norm)
    x = torch.randn(2, 5, D)
    mean = x.mean(-1, keepdim=True)
    var = x.var(-1, unbiased=False, keepdim=True)  # the biased variance, as in Ba et al.
    expected = (x - mean) / torch.sqrt(var + eps) * norm.weight + norm.bias
    assert torch.allclose(norm(x), expected, rtol=1e-5, atol=1e-5)


def test_layernorm_without_bias():
    assert make_norm("layernorm", D, bias=False).bias is None


def test_unknown_norm_lists_valid_kinds():
    with pytest.raises(ValueError, match=r"batchnorm.*layernorm.*rmsnorm"):
        make_norm("batchnorm", D)


def test_post_norm_is_norm_of_sum():
    norm = nn.LayerNorm(D)
    _randomize(norm)
    residual = PostNormResidual(norm, dropout=0.0)
    x, y = torch.randn(2, 3, D), torch.randn(2, 3, D)
    assert torch.equal(residual.sublayer_input(x), x)
    expected = nn.functional.layer_norm(x + y, (D,), norm.weight, norm.bias, norm.eps)
    assert torch.allclose(residual.merge(x, y), expected, atol=1e-6)


def test_pre_norm_is_sum_with_normed_sublayer():
    norm = nn.LayerNorm(D)
    _randomize(norm)
    residual = PreNormResidual(norm, dropout=0.0)
    sublayer = nn.Linear(D, D)
    x = torch.randn(2, 3, D)
    out = residual.merge(x, sublayer(residual.sublayer_input(x)))
    expected = x + sublayer(nn.functional.layer_norm(x, (D,), norm.weight, norm.bias, norm.eps))
    assert torch.allclose(out, expected, atol=1e-6)


@pytest.mark.parametrize("cls", [PostNormResidual, PreNormResidual])
def test_residual_dropout_only_in_training(cls):
    residual = cls(nn.LayerNorm(D), dropout=0.5)
    plain = cls(nn.LayerNorm(D), dropout=0.0)
    x, y = torch.randn(4, D), torch.randn(4, D)
    residual.eval()
    assert torch.equal(residual.merge(x, y), plain.merge(x, y))
    residual.train()
    assert not torch.allclose(residual.merge(x, y), plain.merge(x, y))
