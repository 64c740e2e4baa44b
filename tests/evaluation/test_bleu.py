"""corpus_scores against sacreBLEU's own functions and against scores worked out by hand."""

import math

import pytest
import sacrebleu

from formers.evaluation import corpus_scores

HYPS = [
    "The cat sat on the mat.",
    "A man is playing a guitar on stage.",
    "Two dogs run through the snow!",
    "A woman, smiling, holds an umbrella.",
]
REFS = [
    "The cat is sitting on the mat.",
    "A man plays the guitar on a stage.",
    "Two dogs are running through the snow.",
    "A smiling woman holds a red umbrella.",
]


def test_detokenized_scores_equal_sacrebleu_called_directly():
    scores = corpus_scores(HYPS, REFS)
    bleu = sacrebleu.corpus_bleu(HYPS, [REFS])
    chrf = sacrebleu.corpus_chrf(HYPS, [REFS])
    assert scores["bleu"] == pytest.approx(bleu.score)
    assert scores["chrf"] == pytest.approx(chrf.score)
    assert 0 < scores["bleu"] < 100
    assert scores["bleu_details"] == str(bleu)
    assert scores["bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|")
    assert scores["chrf_signature"].startswith("nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|")
    assert f"version:{sacrebleu.__version__}" in scores["bleu_signature"]


def test_tokenized_mode_equals_sacrebleu_without_tokenization_lowercased():
    hyps = [h.lower().replace(".", " .").replace(",", " ,") for h in HYPS]
    refs = [r.upper() for r in REFS]
    scores = corpus_scores(hyps, refs, tokenized=True)
    reference = sacrebleu.corpus_bleu(hyps, [refs], tokenize="none", lowercase=True)
    assert scores["bleu"] == pytest.approx(reference.score)
    assert "case:lc" in scores["bleu_signature"] and "tok:none" in scores["bleu_signature"]
    assert "case:lc" in scores["chrf_signature"]


def test_identical_hypotheses_and_references_score_100():
    scores = corpus_scores(REFS, REFS)
    assert scores["bleu"] == pytest.approx(100.0)
    assert scores["chrf"] == pytest.approx(100.0)
    assert "100.0/100.0/100.0/100.0 (BP = 1.000" in scores["bleu_details"]


def test_tokenized_mode_by_hand():
    # one wrong last token of five: precisions 4/5, 3/4, 2/3, 1/2; brevity penalty 1
    scores = corpus_scores(["a b c d x"], ["A B C D E"], tokenized=True)
    assert scores["bleu"] == pytest.approx(100 * (4 / 5 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25)
    assert "80.0/75.0/66.7/50.0 (BP = 1.000" in scores["bleu_details"]
    # a short hypothesis pays the brevity penalty exp(1 - ref_len / hyp_len)
    scores = corpus_scores(["a b c d"], ["a b c d e f"], tokenized=True)
    assert scores["bleu"] == pytest.approx(100 * math.exp(1 - 6 / 4))
    # case matters in the default mode, which also splits punctuation off by itself
    assert corpus_scores(["a b c d x"], ["A B C D E"])["bleu"] == 0.0
    assert corpus_scores(["the end."], ["the end ."], tokenized=True)["bleu"] < 100
    assert corpus_scores(["the big end."], ["the big end ."])["bleu"] == pytest.approx(100)


def test_different_counts_name_both():
    with pytest.raises(ValueError, match="3 hypotheses but 4 references"):
        corpus_scores(HYPS[:3], REFS)


def test_empty_input_is_refused():
    with pytest.raises(ValueError, match="nothing to score"):
        corpus_scores([], [])


def test_a_string_is_not_a_corpus():
    with pytest.raises(TypeError, match="lists of strings"):
        corpus_scores("a b c d", "a b c d")
