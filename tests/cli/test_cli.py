"""The command line: the demo and info commands run; bad options get one clear line."""

import subprocess
import sys
from pathlib import Path

import pytest

from formers.cli.main import main


def test_demo_trains_and_shows_translations_and_attention(capsys):
    assert main(["demo", "--steps", "30", "--batch-size", "16", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "trained 30 steps" in out
    assert "held-out exact match" in out
    assert out.count("->") == 5
    assert "encoder-decoder attention" in out
    assert "</s>" in out


def test_info_prints_the_exact_parameter_count(capsys):
    assert main(["info", "transformer_base", "--vocab-size", "37000"]) == 0
    assert "parameters: 63,082,496" in capsys.readouterr().out


@pytest.mark.parametrize("args", [["demo", "--steps", "0"], ["demo", "--length", "1"]])
def test_bad_options_give_one_line_error(args, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"formers {args[0]}: error:")
    assert len(err.splitlines()) == 1


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "formers"  # installed beside the interpreter
    assert script.exists(), (
        f"no console script at {script}: is formers installed (pip install -e .)?"
    )
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True)
    assert result.returncode == 0
    assert result.stdout.startswith("formers ")


def test_info_covers_every_family(capsys):
    """Exact counts of published shapes: GPT-2 small (124,439,808) and BERT-base with its
    30,522-token vocabulary (109,482,240, the count of transformers' BertModel)."""
    assert main(["info", "gpt2_small"]) == 0
    assert "parameters: 124,439,808" in capsys.readouterr().out
    assert main(["info", "bert_base"]) == 0
    assert "parameters: 109,482,240" in capsys.readouterr().out
    assert main(["info", "llama_small", "--vocab-size", "32000"]) == 0
    assert '"family": "gpt"' in capsys.readouterr().out
