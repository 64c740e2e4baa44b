"""``formers demo --save``: the trained model is a checkpoint the other commands read."""

from __future__ import annotations

import contextlib
import io
import re
import shutil
from pathlib import Path

import pytest
import torch

from formers.cli import demo
from formers.cli.main import main
from formers.data.symbol_tokenizer import SymbolTokenizer
from formers.decoding import beam_search
from formers.training.checkpoint import load_model

TEN = "3 1 4 1 5 9 2 6 10 7"  # the demo's longest sources have 10 symbols


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[Path, str, torch.nn.Module]:
    """``(checkpoint, demo output, the in-memory model it saved)`` of one short demo run."""
    directory = tmp_path_factory.mktemp("demo") / "ckpt"
    models = []
    original = demo.save_demo

    def spy(model, *args, **kwargs):
        models.append(model)
        return original(model, *args, **kwargs)

    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out):
        mp.setattr(demo, "save_demo", spy)
        argv = ["demo", "--steps", "30", "--batch-size", "16", "--seed", "3"]
        assert main([*argv, "--save", str(directory)]) == 0
    return directory, out.getvalue(), models[0]


def test_save_prints_where_and_what_next(saved):
    directory, out, _ = saved
    assert f"saved the model to {directory}" in out
    assert f"formers translate --checkpoint {directory}" in out
    assert f"formers attention --checkpoint {directory}" in out
    assert f"formers serve --checkpoint {directory}" in out
    model, tokenizer, config = load_model(directory)
    assert isinstance(tokenizer, SymbolTokenizer) and tokenizer.vocab_size == 13
    assert config["demo"] == {"task": "reverse", "num_symbols": 10, "min_len": 5, "max_len": 10}


def _translate(directory: Path, lines: list[str], tmp_path: Path, *options: str) -> list[str]:
    source, output = tmp_path / "src.txt", tmp_path / "out.txt"
    source.write_text("".join(f"{line}\n" for line in lines))
    argv = ["translate", "--checkpoint", str(directory), "--input", str(source)]
    assert main([*argv, "--output", str(output), "--device", "cpu", *options]) == 0
    return output.read_text().splitlines()


def test_translate_of_the_checkpoint_is_the_demos_beam_output(saved, tmp_path):
    """The five examples the demo decoded in memory come out the same from the saved model."""
    directory, out, _ = saved
    shown = re.findall(r"^  (.+?) +-> (.*?) +\[(?:ok|WRONG)\]$", out, flags=re.MULTILINE)
    assert len(shown) == 5
    sources = [src for src, _ in shown]
    same_search = ["--beam", "4", "--lenpen", "0.6", "--max-len-a", "1", "--max-len-b", "1"]
    assert _translate(directory, sources, tmp_path, *same_search) == [hyp for _, hyp in shown]


def test_translate_with_default_limits_matches_the_model_in_memory(saved, tmp_path):
    directory, _, model = saved
    tokenizer = SymbolTokenizer(10)
    src = torch.tensor([tokenizer.encode(TEN)])
    with torch.no_grad():
        expected = tokenizer.decode(beam_search(model.eval(), src, beam_size=4).tokens[0].tolist())
    assert _translate(directory, [TEN], tmp_path) == [expected]


@pytest.mark.parametrize("suffix", [".html", ".png"])
def test_attention_draws_the_checkpoint(saved, tmp_path, capsys, suffix):
    if suffix == ".png":
        pytest.importorskip("matplotlib", reason="the png needs matplotlib (formers[viz])")
    directory, _, _ = saved
    out = tmp_path / f"attention{suffix}"
    argv = ["attention", "--checkpoint", str(directory), "--src", TEN, "--out", str(out)]
    assert main(argv) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    assert out.stat().st_size > 0
    if suffix == ".html":
        page = out.read_text(encoding="utf-8")
        assert '"target":["<s>","' in page  # the decoder's pieces label the page


def test_attention_names_an_unknown_symbol(saved, tmp_path, capsys):
    directory, _, _ = saved
    argv = ["attention", "--checkpoint", str(directory), "--src", "1 2 11", "--out"]
    assert main([*argv, str(tmp_path / "a.html")]) == 2
    err = capsys.readouterr().err
    assert "symbol '11'" in err and "1..10" in err


def test_save_into_a_missing_folder_fails_before_training(tmp_path, capsys):
    argv = ["demo", "--steps", "30", "--save", str(tmp_path / "no" / "ckpt")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "training" not in capsys.readouterr().out


def test_save_replaces_an_earlier_demo_checkpoint(saved, tmp_path):
    """Saving again into a demo checkpoint replaces it (its symbols.json is a tokenizer file)."""
    directory = Path(shutil.copytree(saved[0], tmp_path / "ckpt"))
    before = (directory / "model.safetensors").read_bytes()
    with contextlib.redirect_stdout(io.StringIO()):
        argv = ["demo", "--steps", "2", "--batch-size", "4", "--seed", "4"]
        assert main([*argv, "--save", str(directory)]) == 0
    assert (directory / "model.safetensors").read_bytes() != before
    assert load_model(directory)[1].vocab_size == 13


def test_save_over_other_files_fails_before_training(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "todo.txt").write_text("keep me")
    monkeypatch.setattr(demo, "train_synthetic", lambda *a, **k: pytest.fail("it trained"))
    assert main(["demo", "--steps", "30", "--save", str(folder)]) == 2
    assert "holds files that are not part of a checkpoint (todo.txt)" in capsys.readouterr().err
    assert (folder / "todo.txt").read_text() == "keep me"
