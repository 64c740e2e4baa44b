"""``formers attention``: PNG and HTML outputs from checkpoints, and clear errors."""

from __future__ import annotations

import sys

import pytest

from formers.cli.main import main


def test_html_round_trip(transformer_checkpoint, tmp_path, capsys):
    out = tmp_path / "page.html"
    code = main(["attention", "--checkpoint", str(transformer_checkpoint), "--src",
                 "the cat sat", "--tgt", "die katze", "--out", str(out)])  # fmt: skip
    assert code == 0 and "wrote" in capsys.readouterr().out
    page = out.read_text(encoding="utf-8")
    assert '"cross"' in page and "katze" in page


def test_html_translates_without_target(transformer_checkpoint, tmp_path):
    out = tmp_path / "page.html"
    argv = ["attention", "--checkpoint", str(transformer_checkpoint), "--src", "a dog",
            "--beam", "1", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0 and out.stat().st_size > 0


@pytest.mark.parametrize("extra", [[], ["--overview"], ["--view", "encoder", "--layer", "0"]])
def test_png(transformer_checkpoint, tmp_path, extra):
    pytest.importorskip("matplotlib")
    out = tmp_path / "map.png"
    argv = ["attention", "--checkpoint", str(transformer_checkpoint), "--src", "the cat",
            "--tgt", "die katze", "--out", str(out), *extra]  # fmt: skip
    assert main(argv) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_decoder_only_png(gpt_checkpoint, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "lm.png"
    assert main(["attention", "--checkpoint", str(gpt_checkpoint), "--src", "hello",
                 "--out", str(out)]) == 0  # fmt: skip
    assert out.stat().st_size > 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--out", "x.jpg"], "unknown picture type '.jpg'"),
        (["--out", "x"], "no suffix"),
        (["--out", "x.png", "--view", "self"], "has encoder, decoder, cross attention"),
        (["--out", "x.png", "--layer", "7"], "out of range"),
        (["--out", "no/such/dir/x.html"], "does not exist"),
    ],
)
def test_errors(transformer_checkpoint, tmp_path, monkeypatch, capsys, argv, message):
    if "x.png" in argv:
        pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    argv = ["attention", "--checkpoint", str(transformer_checkpoint), "--src", "the cat", *argv]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_png_without_matplotlib(transformer_checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    argv = ["attention", "--checkpoint", str(transformer_checkpoint), "--src", "the cat",
            "--out", str(tmp_path / "x.png")]  # fmt: skip
    assert main(argv) == 2
    assert "heatmaps need matplotlib" in capsys.readouterr().err
