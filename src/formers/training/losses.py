"""Losses.

Label smoothing (Szegedy et al. 2016, arXiv 1512.00567) with epsilon 0.1, as in the paper
(arXiv 1706.03762, section 5.4): "This hurts perplexity ... but improves accuracy and BLEU".
PyTorch's own :func:`torch.nn.functional.cross_entropy` implements it (mixing the one-hot target
with the uniform distribution over the whole vocabulary); padding positions are ignored.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def sequence_cross_entropy(
    logits: Tensor, target: Tensor, pad_id: int, label_smoothing: float = 0.0
) -> Tensor:
    """Mean label-smoothed cross-entropy over non-padding positions.

    Args:
        logits: ``(b, t, V)``.
        target: ``(b, t)`` expected ids, ``pad_id`` where there is no token.
        pad_id: ignored target id.
        label_smoothing: epsilon of label smoothing (the paper: 0.1).
    """
    return F.cross_entropy(
        logits.flatten(0, 1),
        target.flatten(),
        ignore_index=pad_id,
        label_smoothing=label_smoothing,
    )
