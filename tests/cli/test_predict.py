"""``formers predict``: labels are the argmax of the model's logits on each text alone (so the
batch size and its padding do not matter), probabilities sum to one, [MASK]s are filled with the
masked LM's best token, embeddings equal ``sentence_embeddings``; bad input gets one line."""

from __future__ import annotations

import io
import json

import pytest
import torch
from tolerance import FP32

from formers.cli.main import main
from formers.nn.encoder_only import sentence_embeddings
from formers.training.checkpoint import load_model

TEXTS = [
    "the movie was wonderful",
    "a dull , tedious film with no heart at all and nothing else to say about it",
    "cats",
    "",
    "dogs are playing in the park",
    "an unbelievably charming story",
    "Ünïcödé wörds: 日本",
]
MASKED = [
    "the movie was [MASK] and moving",
    "[MASK] cat sat on the [MASK]",
    "no mask here",
    "dogs are play[MASK] in the park",
]


def run_predict(capsys, checkpoint, texts, tmp_path, *args: str) -> tuple[int, list[str], str]:
    source = tmp_path / "input.txt"
    source.write_text("".join(f"{t}\n" for t in texts), encoding="utf-8")
    argv = ["predict", "--checkpoint", str(checkpoint), "--input", str(source), *args]
    code = main([*argv, "--device", "cpu"])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


@torch.no_grad()
def one_by_one(checkpoint, texts):
    """The model's output on each text alone (no padding), with its tokenizer's ids."""
    model, tokenizer, _ = load_model(checkpoint)
    outs = []
    for text in texts:
        ids = torch.tensor([tokenizer.encode(text)])
        outs.append((ids, model(ids)[0]))
    return model, tokenizer, outs


def test_labels_are_the_argmax_of_the_logits_whatever_the_batch_size(
    capsys, bert_classifier, tmp_path
):
    _, _, outs = one_by_one(bert_classifier, TEXTS)
    expected = [str(int(logits.argmax())) for _, logits in outs]
    assert len(set(expected)) > 1  # the texts get different labels: the check has teeth
    for batch_size in ("1", "3", "32"):
        code, lines, err = run_predict(
            capsys, bert_classifier, TEXTS, tmp_path, "--batch-size", batch_size
        )
        assert code == 0, err
        assert lines == expected


def test_probabilities_sum_to_one_and_match_the_softmax(capsys, bert_classifier, tmp_path):
    code, lines, err = run_predict(
        capsys, bert_classifier, TEXTS, tmp_path, "--probabilities", "--batch-size", "4"
    )
    assert code == 0, err
    _, _, outs = one_by_one(bert_classifier, TEXTS)
    for line, (_, logits) in zip(lines, outs, strict=True):
        label, *probs = line.split("\t")
        probs = [float(p) for p in probs]
        assert len(probs) == 3
        assert sum(probs) == pytest.approx(1.0, abs=1e-5)
        assert int(label) == max(range(3), key=probs.__getitem__)
        # printed with 6 decimals (rounding <= 5e-7), and batched with padding against alone:
        # fp32 noise, FP32 of the probabilities' scale (at most 1)
        assert probs == pytest.approx(logits.softmax(-1).tolist(), abs=5e-7 + FP32)


def _best_token(model, tokenizer, ids, logits, top_k=1):
    """The masked LM's best non-special tokens at each [MASK] of ``ids`` (1, s)."""
    scores = logits[ids[0] == tokenizer.mask_id].clone()  # (masks, V)
    scores[:, sorted(tokenizer.special_ids)] = float("-inf")
    best = scores.topk(top_k, dim=-1).indices
    return [[p.removeprefix("##") for p in tokenizer.pieces(row)] for row in best.tolist()]


def test_masks_are_filled_with_the_best_token(capsys, bert_mlm, tmp_path):
    code, lines, err = run_predict(capsys, bert_mlm, MASKED, tmp_path, "--batch-size", "2")
    assert code == 0, err
    model, tokenizer, outs = one_by_one(bert_mlm, MASKED)
    expected = []
    for text, (ids, logits) in zip(MASKED, outs, strict=True):
        parts = text.split("[MASK]")
        best = [row[0] for row in _best_token(model, tokenizer, ids, logits)]
        expected.append(parts[0] + "".join(b + p for b, p in zip(best, parts[1:], strict=True)))
    assert lines == expected
    assert lines[2] == "no mask here"
    assert not any("[MASK]" in line for line in lines)


def test_top_k_lists_candidates_as_json(capsys, bert_mlm, tmp_path):
    code, lines, err = run_predict(capsys, bert_mlm, MASKED, tmp_path, "--top-k", "3")
    assert code == 0, err
    model, tokenizer, outs = one_by_one(bert_mlm, MASKED)
    plain = run_predict(capsys, bert_mlm, MASKED, tmp_path)[1]
    for line, text, (ids, logits) in zip(lines, plain, outs, strict=True):
        record = json.loads(line)
        assert record["text"] == text
        expected = _best_token(model, tokenizer, ids, logits, top_k=3)
        assert [[c["token"] for c in mask] for mask in record["masks"]] == expected
        for mask in record["masks"]:
            probs = [c["probability"] for c in mask]
            assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6


@pytest.mark.parametrize("fixture", ["bert_body", "bert_classifier"])
def test_embeddings_equal_sentence_embeddings(capsys, tmp_path, request, fixture):
    checkpoint = request.getfixturevalue(fixture)
    code, lines, err = run_predict(capsys, checkpoint, TEXTS, tmp_path, "--embed")
    assert code == 0, err
    model, tokenizer, _ = load_model(checkpoint)
    body = getattr(model, "body", model)
    for line, text in zip(lines, TEXTS, strict=True):
        ours = torch.tensor(json.loads(line))
        expected = sentence_embeddings(body, torch.tensor([tokenizer.encode(text)]))[0]
        torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)
        assert float(ours.norm()) == pytest.approx(1.0, abs=1e-5)


def test_reads_stdin_and_writes_a_file(capsys, monkeypatch, bert_classifier, tmp_path):
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO("naïve cats\ndogs\n".encode())))
    out = tmp_path / "labels.txt"
    args = ["--checkpoint", str(bert_classifier), "--device", "cpu", "--output", str(out)]
    assert main(["predict", *args]) == 0
    expected = run_predict(capsys, bert_classifier, ["naïve cats", "dogs"], tmp_path)[1]
    assert out.read_text(encoding="utf-8").splitlines() == expected


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2
    assert err.startswith("formers predict: error:")
    assert len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err


def test_empty_input_is_an_error(capsys, bert_classifier, tmp_path):
    code, lines, err = run_predict(capsys, bert_classifier, [], tmp_path)
    assert_one_line_error(code, err, "no texts")
    assert lines == []


def test_invalid_utf8_names_the_line(capsys, bert_classifier, tmp_path):
    source = tmp_path / "bad.txt"
    source.write_bytes(b"fine\nbad \xff byte\n")
    code = main(["predict", "--checkpoint", str(bert_classifier), "--input", str(source)])
    assert_one_line_error(code, capsys.readouterr().err, "line 2")


def test_a_body_without_head_needs_embed(capsys, bert_body, tmp_path):
    code, _, err = run_predict(capsys, bert_body, TEXTS, tmp_path)
    assert_one_line_error(code, err, "--embed")


def test_other_architectures_are_refused_with_the_command_to_use(capsys, char_gpt, tmp_path):
    code, _, err = run_predict(capsys, char_gpt, TEXTS, tmp_path)
    assert_one_line_error(code, err, "'gpt'", "formers generate")


@pytest.mark.parametrize(
    ("fixture", "option", "needle"),
    [
        ("bert_mlm", ["--probabilities"], "--probabilities"),
        ("bert_classifier", ["--top-k", "2"], "--top-k"),
        ("bert_mlm", ["--top-k", "0"], "--top-k"),
        ("bert_classifier", ["--batch-size", "0"], "--batch-size"),
        ("bert_classifier", ["--embed", "--probabilities"], "--probabilities"),
    ],
)
def test_options_that_do_not_fit_are_refused(capsys, tmp_path, request, fixture, option, needle):
    checkpoint = request.getfixturevalue(fixture)
    code, lines, err = run_predict(capsys, checkpoint, TEXTS, tmp_path, *option)
    assert_one_line_error(code, err, needle)
    assert lines == []
