"""Corpus BLEU and chrF with sacreBLEU, with the signatures that make scores reproducible.

BLEU (Papineni et al. 2002) is what the paper reports (Vaswani et al. 2017, arXiv 1706.03762,
Table 2); chrF (Popovic 2015) is a character n-gram F-score that is kinder to morphology. Both
come from sacreBLEU (Post 2018, arXiv 1804.08771), whose signature (``nrefs:1|case:mixed|
eff:no|tok:13a|smooth:exp|version:...``) records every setting that changes the number.

Two ways of scoring:

- **detokenized** (the default, and what sacreBLEU recommends): raw hypotheses against raw
  references, case-sensitive, with sacreBLEU's own ``13a`` tokenization;
- **tokenized** (``tokenized=True``): BLEU with ``tokenize="none", lowercase=True`` on text that is
  already tokenized (e.g. Multi30k's ``tok/`` files, Moses-tokenized and lowercased). Splitting on
  whitespace and lowercasing is what ``multi-bleu.perl -lc`` does, so this is the number papers
  report for Multi30k (e.g. fairseq's 41.02 for ``transformer_tiny`` on test2016). The two
  differ only in degenerate corpora where some n-gram order has no match at all: multi-bleu
  then gives 0, sacreBLEU's default ``exp`` smoothing a small positive score. chrF is computed
  on the same text, lowercased too.

Scores from the two modes are not comparable with each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sacrebleu.metrics import BLEU, CHRF


def corpus_scores(
    hypotheses: Sequence[str], references: Sequence[str], *, tokenized: bool = False
) -> dict[str, Any]:
    """Score hypotheses against one reference each.

    Args:
        hypotheses: one system output per line.
        references: the reference of each hypothesis, in the same order.
        tokenized: the texts are already tokenized and lowercased: score multi-bleu style
            (``tokenize="none"``, lowercased; see the module docstring).

    Returns:
        ``{"bleu": float, "bleu_signature": str, "bleu_details": str, "chrf": float,
        "chrf_signature": str}``; ``bleu_details`` is sacreBLEU's score line with the n-gram
        precisions and brevity penalty, e.g. ``BLEU = 35.20 66.0/42.1/28.3/19.4 (BP = 1.000
        ratio = 1.012 hyp_len = 12345 ref_len = 12198)``.

    Raises:
        ValueError: no hypotheses, or different numbers of hypotheses and references.
    """
    if isinstance(hypotheses, str) or isinstance(references, str):
        raise TypeError("hypotheses and references must be lists of strings, not strings")
    hypotheses, references = list(hypotheses), list(references)
    if len(hypotheses) != len(references):
        raise ValueError(
            f"{len(hypotheses)} hypotheses but {len(references)} references: each hypothesis "
            "needs exactly one reference, in the same order"
        )
    if not hypotheses:
        raise ValueError("nothing to score: no hypotheses and no references")
    if tokenized:
        # force: the text is tokenized on purpose, so sacreBLEU's "forgot to detokenize?" warning
        # does not apply
        bleu = BLEU(tokenize="none", lowercase=True, force=True)
        chrf = CHRF(lowercase=True)
    else:
        bleu = BLEU()
        chrf = CHRF()
    bleu_score = bleu.corpus_score(hypotheses, [references])
    chrf_score = chrf.corpus_score(hypotheses, [references])
    return {
        "bleu": float(bleu_score.score),
        "bleu_signature": str(bleu.get_signature()),
        "bleu_details": str(bleu_score),
        "chrf": float(chrf_score.score),
        "chrf_signature": str(chrf.get_signature()),
    }
