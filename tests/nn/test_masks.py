"""Mask helpers: one boolean convention, True = may attend."""

from __future__ import annotations

import torch

from formers.nn.masks import causal_mask, combine_masks, lengths_mask, padding_mask


def test_causal_mask_square():
    expected = torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1]], dtype=torch.bool)
    assert torch.equal(causal_mask(3), expected)


def test_causal_mask_is_bottom_right_aligned():
    # two new queries after two cached positions sit at positions 2 and 3
    expected = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(causal_mask(2, 4), expected)


def test_padding_and_lengths_masks_agree():
    tokens = torch.tensor([[5, 6, 7, 0], [8, 0, 0, 0]])
    expected = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]], dtype=torch.bool)[:, None, None, :]
    assert torch.equal(padding_mask(tokens, pad_id=0), expected)
    assert torch.equal(lengths_mask(torch.tensor([3, 1]), max_len=4), expected)
    assert lengths_mask(torch.tensor([3, 1])).shape == (2, 1, 1, 3)


def test_combine_masks():
    a = torch.tensor([[True, False], [True, True]])
    b = torch.tensor([True, False])
    assert torch.equal(combine_masks(a, None, b), torch.tensor([[True, False], [True, False]]))
    assert combine_masks(None, None) is None
    assert combine_masks(None, a) is a
