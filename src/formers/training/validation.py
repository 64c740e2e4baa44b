"""Validation during training: loss, perplexity and BLEU on a held-out set.

Under torchrun the processes share the work (see :class:`Distributed`): each computes the loss
sums of every N-th batch and translates every N-th source; the sums are all-reduced and the
translations gathered in their order, so that every process scores the whole set alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from formers.nn.modes import evaluating
from formers.training.distributed import Distributed
from formers.training.losses import smoothed_nll


@dataclass
class ValidationSet:
    """Encoded pairs for loss/perplexity, and the raw texts for BLEU.

    Attributes:
        data: the encoded pairs (:class:`formers.data.parallel.EncodedParallel`).
        batches: index lists from a non-shuffling token-count sampler.
        sources, references: raw text lines.
    """

    data: object
    batches: list[list[int]]
    sources: list[str]
    references: list[str]


def validation_loss(
    model: nn.Module,
    valid: ValidationSet,
    device: torch.device,
    label_smoothing: float,
    dist: Distributed | None = None,
) -> dict[str, float]:
    """Label-smoothed loss and NLL per token, and perplexity ``exp(nll)``, over the whole set
    (this process computes the sums of its share of the batches, ``dist`` adds them up)."""
    from formers.data.parallel import collate

    dist = dist or Distributed()
    loss_sum = nll_sum = 0.0
    tokens = 0
    with evaluating(model):
        for indices in dist.shard(valid.batches):
            batch = collate(valid.data, indices)
            src, tgt_in, tgt_out = (t.to(device) for t in (batch.src, batch.tgt_in, batch.tgt_out))
            loss, nll, n = smoothed_nll(model(src, tgt_in), tgt_out, model.pad_id, label_smoothing)
            loss_sum += float(loss)
            nll_sum += float(nll)
            tokens += n
    loss_sum, nll_sum, tokens = dist.all_reduce_sum([loss_sum, nll_sum, tokens])
    nll_per_token = nll_sum / max(tokens, 1)
    return {
        "loss": loss_sum / max(tokens, 1),
        "nll": nll_per_token,
        "ppl": math.exp(min(nll_per_token, 100.0)),
    }


def validation_bleu(
    model: nn.Module,
    tokenizer,
    valid: ValidationSet,
    device: torch.device,
    *,
    beam: int,
    tokenized: bool,
    max_tokens: int,
    dist: Distributed | None = None,
) -> dict[str, float | str]:
    """Translate the validation sources and score them with sacreBLEU (this process translates
    its share of the sources, ``dist`` gathers all translations in order to every process).

    A sentence's translation does not depend on the others in its batch (see
    :func:`formers.inference.translate.translate`; only float rounding differs, which could
    at most flip an exact tie), so that sharing the work changes nothing."""
    from formers.evaluation.bleu import corpus_scores
    from formers.inference.translate import translate

    # translate() puts the model in eval mode and restores its mode afterwards
    dist = dist or Distributed()
    outputs = translate(
        model, tokenizer, dist.shard(valid.sources), beam=beam, max_tokens=max_tokens,
        device=device,
    )  # fmt: skip
    hypotheses = dist.unshard([nbest[0].text for nbest in outputs])
    scores = corpus_scores(hypotheses, valid.references, tokenized=tokenized)
    return {
        "bleu": scores["bleu"],
        "chrf": scores["chrf"],
        "bleu_signature": scores["bleu_signature"],
    }
