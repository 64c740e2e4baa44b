"""``formers evaluate``: the scores and signatures it prints; bad files get one clear line."""

import json

import pytest
import sacrebleu

from formers.cli.main import main


@pytest.fixture
def files(tmp_path):
    hyps = ["The cat sat on the mat.", "A man plays a guitar on stage."]
    refs = ["The cat is sitting on the mat.", "A man plays the guitar on a stage."]
    hyp_file, ref_file = tmp_path / "hyp.txt", tmp_path / "ref.txt"
    hyp_file.write_text("\n".join(hyps) + "\n", encoding="utf-8")
    ref_file.write_text("\n".join(refs) + "\n", encoding="utf-8")
    return hyp_file, ref_file, hyps, refs


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("formers evaluate: error:")
    assert len(err.splitlines()) == 1
    return err


def test_prints_bleu_chrf_signatures_and_json(files, capsys):
    hyp_file, ref_file, hyps, refs = files
    args = ["evaluate", "--hypotheses", str(hyp_file), "--references", str(ref_file)]
    assert main([*args, "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    bleu = sacrebleu.corpus_bleu(hyps, [refs])
    assert lines[0] == str(bleu)
    assert "tok:13a" in lines[1] and "signature:" in lines[1]
    assert lines[2] == f"chrF2 = {sacrebleu.corpus_chrf(hyps, [refs]).score:.2f}"
    assert "nc:6" in lines[3]
    scores = json.loads(lines[-1])
    assert scores["bleu"] == pytest.approx(bleu.score)
    assert set(scores) == {"bleu", "bleu_signature", "bleu_details", "chrf", "chrf_signature"}


def test_tokenized_mode(files, capsys):
    hyp_file, ref_file, _, _ = files
    args = ["evaluate", "--hypotheses", str(hyp_file), "--references", str(ref_file)]
    assert main([*args, "--tokenized"]) == 0
    out = capsys.readouterr().out
    assert "tok:none" in out and "case:lc" in out
    assert "{" not in out  # no JSON without --json


def test_different_line_counts_name_both_files(files, tmp_path, capsys):
    hyp_file, _, _, _ = files
    refs = tmp_path / "three.txt"
    refs.write_text("a\nb\nc\n", encoding="utf-8")
    assert main(["evaluate", "--hypotheses", str(hyp_file), "--references", str(refs)]) == 2
    err = _error(capsys)
    assert f"{hyp_file} has 2 lines but {refs} has 3" in err


def test_empty_missing_and_non_utf8_files(files, tmp_path, capsys):
    hyp_file, ref_file, _, _ = files
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    assert main(["evaluate", "--hypotheses", str(empty), "--references", str(empty)]) == 2
    assert "empty" in _error(capsys)
    missing = tmp_path / "missing.txt"
    assert main(["evaluate", "--hypotheses", str(missing), "--references", str(ref_file)]) == 2
    assert f"no such file: {missing}" in _error(capsys)
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("ok\nM\u00e4dchen\n".encode("latin-1"))
    assert main(["evaluate", "--hypotheses", str(latin1), "--references", str(ref_file)]) == 2
    assert f"{latin1}, line 2: bytes that are not UTF-8" in _error(capsys)
