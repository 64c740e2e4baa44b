"""``formers export``: the command writes a model its runtime loads and runs like formers, with
the tokenizer and a manifest; ``--force`` replaces an old export only once the new one is
written, and a failed export leaves nothing behind."""

from __future__ import annotations

import json

import pytest

from formers.cli.main import main
from formers.export import ct2 as export_ct2
from formers.inference.translate import translate
from formers.training.checkpoint import load_model

ct2 = pytest.importorskip("ctranslate2")


def test_ct2_translator_runs_like_formers(spm_translator, tmp_path, capsys):
    out = tmp_path / "ct2"
    assert main(["export", "--to", "ct2", "--checkpoint", str(spm_translator),
                 "--out", str(out)]) == 0  # fmt: skip
    assert str(out) in capsys.readouterr().out
    assert {"model.bin", "tokenizer.model", "export.json"} <= {p.name for p in out.iterdir()}
    manifest = json.loads((out / "export.json").read_text())
    assert manifest == {"from": "ckpt", "architecture": "transformer", "to": "ct2",
                        "quantization": "float32"}  # fmt: skip
    model, tokenizer, _ = load_model(spm_translator)
    lines = ["the quick brown fox", "a cat sat on the mat"]
    ours = [h[0].tokens for h in translate(model, tokenizer, lines, beam=1, max_len_b=20,
                                           max_len_a=0.0)]  # fmt: skip
    found = ct2.Translator(str(out)).translate_batch(
        [tokenizer.pieces(tokenizer.encode(line)) for line in lines], beam_size=1,
        max_decoding_length=19,
    )  # fmt: skip
    assert [tokenizer.pieces(o) for o in ours] == [r.hypotheses[0] for r in found]


def test_ct2_generator_for_a_character_gpt(char_gpt, tmp_path):
    out = tmp_path / "ct2"
    assert main(["export", "--to", "ct2", "--checkpoint", str(char_gpt), "--out", str(out)]) == 0
    assert (out / "chars.json").is_file()
    generator = ct2.Generator(str(out))
    assert generator.generate_batch([list("hello")], max_length=4, sampling_topk=1)[0]


def test_force_replaces_only_after_success(spm_translator, tmp_path, monkeypatch):
    out = tmp_path / "ct2"
    command = ["export", "--to", "ct2", "--checkpoint", str(spm_translator), "--out", str(out)]
    assert main(command) == 0
    (out / "old.txt").write_text("from the previous export\n")
    assert main(command) == 2  # exists, no --force

    def broken(*args, **kwargs):
        raise RuntimeError("the export failed half-way")

    monkeypatch.setattr(export_ct2, "export_ct2", broken)
    with pytest.raises(RuntimeError, match="half-way"):
        main([*command, "--force"])
    assert (out / "old.txt").is_file()  # the old export is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["ct2"]  # no temporary left
    monkeypatch.undo()
    assert main([*command, "--force"]) == 0
    assert not (out / "old.txt").exists() and (out / "model.bin").is_file()


def test_vocabulary_pieces_must_be_distinct():
    class Doubled:
        def pieces(self, ids):
            return ["<pad>", "a", "a"][: len(ids)]

    with pytest.raises(ValueError, match="tokens 1 and 2 are both 'a'"):
        export_ct2._vocabulary(Doubled(), 3)
