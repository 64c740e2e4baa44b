"""Input embeddings: ``dropout(sqrt(d_model) * token(x) + PE)`` (arXiv 1706.03762, 3.4-3.5)."""

from __future__ import annotations

import math

import torch
from torch import nn

from formers.nn import Embeddings, SinusoidalPositionalEncoding
from formers.nn.positional import sinusoidal_table

D = 8


def test_scaled_token_plus_positions():
    token = nn.Embedding(11, D)
    embed = Embeddings(token, SinusoidalPositionalEncoding(D, max_len=16))
    tokens = torch.tensor([[3, 4, 5], [6, 0, 0]])
    expected = token.weight[tokens] * math.sqrt(D) + sinusoidal_table(torch.arange(3), D)
    assert torch.allclose(embed(tokens), expected, atol=1e-6)
    # offset: positions continue where an earlier call stopped (incremental decoding)
    expected_tail = token.weight[tokens[:, 2:]] * math.sqrt(D) + sinusoidal_table(
        torch.tensor([2]), D
    )
    assert torch.allclose(embed(tokens[:, 2:], offset=2), expected_tail, atol=1e-6)


def test_no_positions_and_custom_scale():
    token = nn.Embedding(11, D)
    tokens = torch.tensor([[1, 2]])
    assert torch.equal(Embeddings(token, None, scale=1.0)(tokens), token.weight[tokens])
    assert torch.allclose(Embeddings(token, None, scale=2.0)(tokens), 2 * token.weight[tokens])
