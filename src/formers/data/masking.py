"""Masked language model inputs: BERT's 80/10/10 corruption, drawn anew for every batch.

BERT (Devlin et al. 2018, arXiv 1810.04805, section 3.1, Task #1) chooses 15% of the token
positions to predict; a chosen token is replaced by [MASK] 80% of the time, by a random token
10% of the time and left unchanged 10% of the time, so that the model cannot rely on [MASK]
being present (it never is when fine-tuning). BERT fixed the masks once when preparing its data
(duplicated 10 times); RoBERTa (Liu et al. 2019, arXiv 1907.11692, section 4.1) draws them anew
each time a sequence is seen ("dynamic masking"), which is what calling :func:`mask_tokens` on
every batch does.

Each non-special token is chosen independently with the given probability (so 15% on average,
as in RoBERTa's and Hugging Face's implementations); random replacements are drawn uniformly
from the whole vocabulary, as in BERT.

Shapes: b batch, s length.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

IGNORE_INDEX = -100  # the label of positions not to predict (torch's cross-entropy default)


def mask_tokens(
    ids: Tensor,
    *,
    mask_id: int,
    vocab_size: int,
    special_ids: Iterable[int] | Tensor = (),
    probability: float = 0.15,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Corrupt a batch for masked language modelling.

    Args:
        ids: ``(b, s)`` token ids (any shape works).
        mask_id: the [MASK] id.
        vocab_size: random replacements are drawn from ``[0, vocab_size)``.
        special_ids: ids never chosen (padding, [CLS], [SEP], ...).
        probability: the chance that a non-special token is chosen (BERT: 0.15).
        generator: source of randomness, for reproducible masks (the same draws on any
            device of ``ids``); the global generator of ``ids``'s device when ``None``.

    Returns:
        ``(inputs, labels)``, both shaped like ``ids``: the corrupted ids, and the original id
        at chosen positions with :data:`IGNORE_INDEX` (-100) everywhere else.
    """
    if not 0.0 < probability <= 1.0:
        raise ValueError(f"probability must be in (0, 1], got {probability}")
    if not 0 <= mask_id < vocab_size:
        raise ValueError(f"mask_id={mask_id} is outside the vocabulary [0, {vocab_size})")
    if ids.dtype != torch.long:
        raise TypeError(f"ids must be a LongTensor, got {ids.dtype}")
    special = torch.as_tensor(
        list(special_ids) if not isinstance(special_ids, Tensor) else special_ids
    )
    special = special.to(device=ids.device, dtype=torch.long)
    # draw where the generator lives (a CPU generator may serve a batch on the GPU)
    device = ids.device if generator is None else generator.device
    draw = torch.rand(ids.shape, generator=generator, device=device).to(ids.device)
    chosen = (draw < probability) & ~torch.isin(ids, special)
    # A second uniform decides what happens to the chosen: [0, .8) mask, [.8, .9) random.
    action = torch.rand(ids.shape, generator=generator, device=device).to(ids.device)
    random_ids = torch.randint(vocab_size, ids.shape, generator=generator, device=device)
    random_ids = random_ids.to(ids.device)
    inputs = torch.where(chosen & (action < 0.8), torch.full_like(ids, mask_id), ids)
    inputs = torch.where(chosen & (action >= 0.8) & (action < 0.9), random_ids, inputs)
    labels = torch.where(chosen, ids, torch.full_like(ids, IGNORE_INDEX))
    return inputs, labels
