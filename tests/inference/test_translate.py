"""translate(): input order, batching invariance, n-best lists, greedy for beam 1, bad input."""

import random

import pytest
import torch
from tolerance import FP32

from formers.decoding import beam_search, gnmt_length_penalty, greedy_search
from formers.inference import Translation, translate
from formers.inference.translate import length_batches
from inference.helpers import PARALLEL, SENTENCES, WordTokenizer, tiny_model, train_tokenizer

OPTIONS = dict(max_len_a=1.0, max_len_b=4)


def _same(a: list[list[Translation]], b: list[list[Translation]]) -> None:
    """Identical texts and tokens; scores equal up to float noise from different padding."""
    assert [[h.text for h in hyps] for hyps in a] == [[h.text for h in hyps] for hyps in b]
    assert [[h.tokens for h in hyps] for hyps in a] == [[h.tokens for h in hyps] for hyps in b]
    for x, y in zip(a, b, strict=True):
        assert [h.score for h in x] == pytest.approx([h.score for h in y], abs=1e-4)


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=3)


@pytest.fixture(scope="module")
def tok():
    return WordTokenizer()


@pytest.mark.parametrize("beam", [1, 3])
def test_results_are_in_input_order_and_equal_to_translating_alone(model, tok, beam):
    together = translate(model, tok, SENTENCES, beam=beam, **OPTIONS)
    alone = [translate(model, tok, [s], beam=beam, **OPTIONS)[0] for s in SENTENCES]
    _same(together, alone)
    assert len({hyps[0].text for hyps in together}) > 3, "outputs should depend on the source"


def test_permuting_the_input_permutes_the_output(model, tok):
    order = list(range(len(SENTENCES)))
    random.Random(0).shuffle(order)
    original = translate(model, tok, SENTENCES, beam=2, **OPTIONS)
    permuted = translate(model, tok, [SENTENCES[i] for i in order], beam=2, **OPTIONS)
    _same(permuted, [original[i] for i in order])


@pytest.mark.parametrize("beam", [1, 4])
def test_batching_does_not_change_results(model, tok, beam):
    longest = max(len(s.split()) for s in SENTENCES)
    small = translate(model, tok, SENTENCES, beam=beam, max_tokens=longest, **OPTIONS)
    huge = translate(model, tok, SENTENCES, beam=beam, max_tokens=10**6, **OPTIONS)
    one_each = translate(model, tok, SENTENCES, beam=beam, max_sentences=1, **OPTIONS)
    _same(small, huge)
    _same(one_each, huge)


def test_nbest_lists_are_sorted_and_start_with_the_best(model, tok):
    nbest = translate(model, tok, SENTENCES, beam=4, nbest=3, **OPTIONS)
    best = translate(model, tok, SENTENCES, beam=4, nbest=1, **OPTIONS)
    for hyps, top in zip(nbest, best, strict=True):
        assert len(hyps) == 3
        scores = [h.score for h in hyps]
        assert scores == sorted(scores, reverse=True)
        assert len({tuple(h.tokens) for h in hyps}) == 3
        assert (hyps[0].text, hyps[0].tokens) == (top[0].text, top[0].tokens)


def test_beam_one_is_greedy_search_with_beam_search_scores(model, tok):
    results = translate(model, tok, SENTENCES, beam=1, lenpen=0.6, **OPTIONS)
    lp = gnmt_length_penalty(0.6)
    for text, (hyp,) in zip(SENTENCES, results, strict=True):
        src = torch.tensor([tok.encode(text)])
        greedy = greedy_search(model, src, **OPTIONS)
        n = int(greedy.lengths[0])
        assert hyp.tokens == greedy.tokens[0, : n - 1].tolist()  # without the EOS
        assert hyp.text == tok.decode(hyp.tokens)
        assert hyp.score == pytest.approx(float(greedy.scores[0]) / lp(n), rel=FP32, abs=1e-6)
        beam = beam_search(model, src, beam_size=1, lenpen=0.6, **OPTIONS)
        assert hyp.tokens == beam.tokens[0, : n - 1].tolist()
        assert hyp.score == pytest.approx(float(beam.scores[0]), abs=1e-4)


def test_beam_search_scores_and_tokens_match_the_search(model, tok):
    (hyps,) = translate(model, tok, [SENTENCES[2]], beam=4, nbest=2, lenpen=1.0, **OPTIONS)
    out = beam_search(
        model, torch.tensor([tok.encode(SENTENCES[2])]), beam_size=4, nbest=2, lenpen=1.0,
        **OPTIONS,
    )  # fmt: skip
    for hyp, ref in zip(hyps, out.nbest[0], strict=True):
        assert hyp.tokens + [model.eos_id] == ref.tokens.tolist()
        assert hyp.score == pytest.approx(ref.score)


def test_empty_list_and_empty_sentences(model, tok):
    assert translate(model, tok, []) == []
    results = translate(model, tok, ["", "a b", "   "], beam=2, nbest=2, **OPTIONS)
    assert results[0] == [Translation("", 0.0, [])] == results[2]
    assert results[1] == translate(model, tok, ["a b"], beam=2, nbest=2, **OPTIONS)[0]


def test_learned_positions_cap_the_output_and_refuse_long_sources(tok):
    model = tiny_model(positions="learned", max_positions=6)
    results = translate(model, tok, ["a b c", "a b c d e f"], beam=2, max_len_b=50)
    assert all(len(hyps[0].tokens) < 6 for hyps in results)  # + EOS <= 6 positions
    with pytest.raises(ValueError, match=r"sentence 2 of 2 has 7 tokens.*6 learned source"):
        translate(model, tok, ["a", "a b c d e f g"])


def test_mode_and_device_handling(tok):
    model = tiny_model().train()
    translate(model, tok, ["a b"], beam=2, device="cpu", **OPTIONS)
    assert model.training, "translate must restore the model's training mode"


def test_progress_bar_goes_to_stderr(model, tok, capsys):
    translate(model, tok, SENTENCES, beam=1, progress=True, **OPTIONS)
    captured = capsys.readouterr()
    assert "translate" in captured.err and "10/10" in captured.err
    assert captured.out == ""


def test_the_power_length_penalty_form_scores_as_fairseq(model, tok):
    """``lenpen_form="power"`` ranks by ``log P / n ** lenpen`` (fairseq's ``--lenpen``), for
    greedy and beam search alike, and is what beam_search does with that penalty."""
    src = torch.tensor([tok.encode(SENTENCES[2])])
    (hyps,) = translate(model, tok, [SENTENCES[2]], beam=4, nbest=2, lenpen=1.0,
                        lenpen_form="power", **OPTIONS)  # fmt: skip
    out = beam_search(model, src, beam_size=4, nbest=2, length_penalty=lambda n: n, **OPTIONS)
    for hyp, ref in zip(hyps, out.nbest[0], strict=True):
        assert hyp.tokens + [model.eos_id] == ref.tokens.tolist()
        assert hyp.score == pytest.approx(ref.log_prob / len(ref.tokens))
    ((greedy,),) = translate(model, tok, [SENTENCES[2]], beam=1, lenpen=2.0,
                             lenpen_form="power", **OPTIONS)  # fmt: skip
    n = len(greedy.tokens) + 1  # with the EOS
    log_prob = float(greedy_search(model, src, **OPTIONS).scores[0])
    assert greedy.score == pytest.approx(log_prob / n**2, rel=FP32, abs=1e-6)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(beam=0), r"beam must be an integer in \[1, 128\], got 0"),
        (dict(beam=2, nbest=3), r"nbest must be between 1 and the beam size \(2\)"),
        (dict(nbest=0), r"nbest must be an integer in \[1, 128\], got 0"),
        (dict(max_tokens=0), r"max_tokens must be an integer in \[1, 1,000,000\]"),
        (dict(max_tokens=8), r"sentence 5 of 10 has 9 tokens, more than max_tokens \(8\)"),
        (dict(max_len_a=-1.0), r"max_len_a must be a number in \[0.0, 10.0\], got -1.0"),
        (dict(max_len_a=0.0, max_len_b=0), "max_len_b must be"),
        (dict(lenpen=float("nan")), "lenpen must be a finite number"),
        (dict(lenpen=1e308), r"lenpen must be a number in \[0.0, 10.0\], got 1e\+308"),
        (dict(max_len_b=10**9), r"max_len_b must be an integer in \[0, 100,000\]"),
        (dict(lenpen_form="fairseq"), "lenpen_form must be one of gnmt, power, got 'fairseq'"),
        (dict(max_sentences=0), "max_sentences must be >= 1"),
    ],
)
def test_impossible_options_raise_clear_errors(model, tok, options, message):
    with pytest.raises(ValueError, match=message):
        translate(model, tok, SENTENCES, **options)


def test_a_tokenizer_with_ids_beyond_the_model_vocabulary_is_refused(tok):
    model = tiny_model(vocab_size=8)
    with pytest.raises(ValueError, match="sentence 1 of 1 has token ids outside.*vocabulary of 8"):
        translate(model, tok, ["l"])


def test_with_the_sentencepiece_tokenizer():
    tok = train_tokenizer()
    model = tiny_model(vocab_size=tok.vocab_size, seed=1)
    sources = [src for src, _ in PARALLEL] + ["", "the park"]
    longest = max(len(tok.encode(s)) for s in sources)
    results = translate(model, tok, sources, beam=3, nbest=2, max_tokens=longest, **OPTIONS)
    alone = [translate(model, tok, [s], beam=3, nbest=2, **OPTIONS)[0] for s in sources]
    _same(results, alone)
    for hyps in results:
        assert all(hyp.text == tok.decode(hyp.tokens) for hyp in hyps)
        assert all(t not in (tok.pad_id, tok.bos_id, tok.eos_id) for h in hyps for t in h.tokens)


def test_a_single_string_is_not_mistaken_for_a_list(model, tok):
    with pytest.raises(TypeError, match="list of strings"):
        translate(model, tok, "a b c")


def test_length_batches_respect_both_limits_and_cover_every_index():
    lengths = [5, 1, 3, 3, 8, 2, 2, 7, 1, 4]
    batches = list(length_batches(lengths, max_tokens=8, max_sentences=3))
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) <= 3
        assert len(batch) * max(lengths[i] for i in batch) <= 8
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(flat)
    with pytest.raises(ValueError, match="more than max_tokens"):
        list(length_batches([3, 9], max_tokens=8))


@pytest.mark.parametrize("positions", ["learned", "sinusoidal"])
def test_outputs_stop_at_the_models_positions(tok, positions):
    """Learned positions end at max_positions and sinusoidal ones were built for it: a length
    limit beyond it is capped there (a huge one would allocate its token buffer), and one past
    the stated range of max_len_b is refused."""
    model = tiny_model(positions=positions, max_positions=6)
    eos = torch.tensor([model.eos_id])  # a model that never ends: outputs run to their limit
    model.generator.register_forward_hook(lambda m, i, out: out.index_fill(-1, eos, -1e4))
    found = translate(model, tok, SENTENCES[:3], beam=2, max_len_a=0.0, max_len_b=100_000)
    assert max(len(hyps[0].tokens) for hyps in found) == 5  # + EOS = 6 positions
    assert all(hyps[0].truncated for hyps in found)  # the EOS was forced: said so
    with pytest.raises(ValueError, match=r"max_len_b must be an integer in \[0, 100,000\]"):
        translate(model, tok, SENTENCES[:3], beam=2, max_len_b=10**9)


def test_only_translations_that_reach_the_limit_are_marked_truncated(tok):
    """The untrained model never chooses EOS: every output runs to its limit and is marked; with
    EOS made certain every output ends at once, short of its limit, and none is marked."""
    model = tiny_model(seed=3)
    found = translate(model, tok, SENTENCES, beam=2, max_len_a=1.0, max_len_b=3)
    assert [len(h[0].tokens) + 1 for h in found] == [len(tok.encode(s)) + 3 for s in SENTENCES]
    assert all(h[0].truncated for h in found)
    eos = torch.tensor([model.eos_id])
    model.generator.register_forward_hook(lambda m, i, out: out.index_fill(-1, eos, 1e4))
    found = translate(model, tok, SENTENCES, beam=2, max_len_a=1.0, max_len_b=3)
    assert all(h[0].tokens == [] and not h[0].truncated for h in found)
