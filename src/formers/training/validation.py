"""Validation during training: loss, perplexity and BLEU on a held-out set."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

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


@torch.inference_mode()
def validation_loss(
    model: nn.Module, valid: ValidationSet, device: torch.device, label_smoothing: float
) -> dict[str, float]:
    """Label-smoothed loss and NLL per token, and perplexity ``exp(nll)``, over the whole set."""
    from formers.data.parallel import collate

    was_training = model.training
    model.eval()
    loss_sum = nll_sum = 0.0
    tokens = 0
    for indices in valid.batches:
        batch = collate(valid.data, indices)
        src, tgt_in, tgt_out = (t.to(device) for t in (batch.src, batch.tgt_in, batch.tgt_out))
        loss, nll, n = smoothed_nll(model(src, tgt_in), tgt_out, model.pad_id, label_smoothing)
        loss_sum += float(loss)
        nll_sum += float(nll)
        tokens += n
    model.train(was_training)
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
) -> dict[str, float | str]:
    """Translate the validation sources and score them with sacreBLEU."""
    from formers.evaluation.bleu import corpus_scores
    from formers.inference.translate import translate

    # translate() puts the model in eval mode and restores its mode afterwards
    outputs = translate(
        model, tokenizer, valid.sources, beam=beam, max_tokens=max_tokens, device=device
    )
    hypotheses = [nbest[0].text for nbest in outputs]
    scores = corpus_scores(hypotheses, valid.references, tokenized=tokenized)
    return {
        "bleu": scores["bleu"],
        "chrf": scores["chrf"],
        "bleu_signature": scores["bleu_signature"],
    }
