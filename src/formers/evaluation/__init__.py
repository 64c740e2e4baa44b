"""Evaluation: corpus BLEU and chrF with sacreBLEU."""

from formers.evaluation.bleu import corpus_scores

__all__ = ["corpus_scores"]
