"""``--int8`` on translate, generate and serve (the refusals are rows of test_bad_input.py)."""

from __future__ import annotations

from formers.cli.main import main


def test_commands_run_on_the_int8_model(spm_translator, char_gpt, tmp_path, capsys):
    from formers.serve.service import ModelService

    text = tmp_path / "in.txt"
    text.write_text("the quick brown fox\na cat sat on the mat\n")
    out = tmp_path / "out.txt"
    argv = ["translate", "--checkpoint", str(spm_translator), "--input", str(text)]
    assert main([*argv, "--output", str(out), "--int8", "--beam", "2"]) == 0
    assert len(out.read_text().splitlines()) == 2
    command = ["generate", "--checkpoint", str(char_gpt), "--prompt", "hel", "--int8"]
    assert main([*command, "--max-new-tokens", "5", "--temperature", "0", "--no-stream"]) == 0
    assert capsys.readouterr().out.startswith("hel")
    service = ModelService.load(char_gpt, int8=True)
    info = service.describe()
    assert info["int8"] is True and info["parameters"] > 0
