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
    logits: Tensor,
    target: Tensor,
    pad_id: int,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> Tensor:
    """Label-smoothed cross-entropy over non-padding positions (their mean, or their sum).

    Args:
        logits: ``(b, t, V)``.
        target: ``(b, t)`` expected ids, ``pad_id`` where there is no token.
        pad_id: ignored target id.
        label_smoothing: epsilon of label smoothing (the paper: 0.1).
        reduction: ``"mean"`` or ``"sum"`` (to normalize by the tokens of several batches).
    """
    return F.cross_entropy(
        logits.flatten(0, 1),
        target.flatten(),
        ignore_index=pad_id,
        label_smoothing=label_smoothing,
        reduction=reduction,
    )


def smoothed_nll(
    logits: Tensor, target: Tensor, pad_id: int, label_smoothing: float = 0.0
) -> tuple[Tensor, Tensor, int]:
    """Summed label-smoothed loss and summed NLL from one log-softmax (for loss and perplexity).

    The smoothed loss is ``(1 - eps) * nll + eps * mean_v(-log p_v)`` per token, exactly what
    :func:`torch.nn.functional.cross_entropy` computes with ``label_smoothing=eps``
    (``tests/training/test_losses.py`` checks it against that reference).

    Returns:
        ``(loss_sum, nll_sum, n_tokens)`` over non-padding positions.
    """
    lprobs = logits.float().log_softmax(dim=-1).flatten(0, 1)  # (b*t, V)
    target = target.flatten()
    keep = target != pad_id
    lprobs, target = lprobs[keep], target[keep]
    nll = -lprobs.gather(1, target[:, None]).squeeze(1).sum()
    smooth = -lprobs.mean(dim=-1).sum()
    loss = (1.0 - label_smoothing) * nll + label_smoothing * smooth
    return loss, nll.detach(), int(target.numel())


def summed_cross_entropy(
    logits: Tensor, labels: Tensor, label_smoothing: float = 0.0
) -> tuple[Tensor, Tensor]:
    """Summed label-smoothed cross-entropy and summed NLL (detached), for a task's ``loss``.

    Args:
        logits: ``(n, V)`` (flatten any sequence dimension first).
        labels: ``(n,)`` expected ids; ``-100`` where there is nothing to predict (PyTorch's
            ``ignore_index``, e.g. the unmasked positions of masked LM).
        label_smoothing: epsilon of label smoothing.

    Returns:
        ``(loss_sum, nll_sum)``; the NLL is the loss itself when ``label_smoothing`` is 0.
    """
    loss = F.cross_entropy(logits, labels, label_smoothing=label_smoothing, reduction="sum")
    nll = loss if label_smoothing == 0 else F.cross_entropy(logits, labels, reduction="sum")
    return loss, nll.detach()
