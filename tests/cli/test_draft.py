"""``--draft`` on translate and generate: the output is the model's own greedy output, with any
draft that shares its tokenizer (the refusals are rows of test_bad_input.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from formers.cli.main import main
from formers.models import TransformerConfig, build_transformer
from formers.training.checkpoint import load_model, save_checkpoint


@pytest.fixture(scope="module")
def small_translator(spm_translator, tmp_path_factory) -> Path:
    """A 1 + 1-layer translator with the fixture translator's tokenizer (a draft for it)."""
    _, tokenizer, _ = load_model(spm_translator)
    cfg = TransformerConfig(
        vocab_size=tokenizer.vocab_size, d_model=16, d_ff=32, num_heads=2, num_encoder_layers=1,
        num_decoder_layers=1, dropout=0.0, positions="learned", max_positions=64,
    )  # fmt: skip
    torch.manual_seed(9)
    model = build_transformer(cfg)
    directory = tmp_path_factory.mktemp("draft") / "ckpt"
    save_checkpoint(directory, model, model.config.to_dict(), tokenizer=tokenizer)
    return directory


def _translate(checkpoint: Path, text: Path, out: Path, *extra: str) -> list[str]:
    argv = ["translate", "--checkpoint", str(checkpoint), "--input", str(text), "--beam", "1"]
    assert main([*argv, "--output", str(out), *extra]) == 0
    return out.read_text().splitlines()


def test_translate_with_a_draft_gives_the_greedy_output(spm_translator, small_translator, tmp_path):
    text = tmp_path / "in.txt"
    text.write_text("the quick brown fox\na cat sat on the mat\nunbelievably, it works\n")
    plain = _translate(spm_translator, text, tmp_path / "a.txt")
    for draft in (small_translator, spm_translator):
        for k in ("1", "3"):
            found = _translate(spm_translator, text, tmp_path / "b.txt", "--draft", str(draft),
                               "--draft-k", k)  # fmt: skip
            assert found == plain


def test_generate_with_a_draft_gives_the_greedy_output(char_gpt, capsys):
    argv = ["generate", "--checkpoint", str(char_gpt), "--prompt", "hello", "--temperature", "0",
            "--max-new-tokens", "12", "--no-stream"]  # fmt: skip
    assert main(argv) == 0
    plain = capsys.readouterr().out
    assert main([*argv, "--draft", str(char_gpt), "--draft-k", "3"]) == 0
    assert capsys.readouterr().out == plain


def test_heads_then_generate_with_them_gives_the_greedy_output(char_gpt, tmp_path, capsys):
    from formers.decoding.blockwise import load_heads
    from tests.cli.conftest import CHAR_TEXT

    text = tmp_path / "text.txt"
    text.write_text(CHAR_TEXT * 4)
    out = tmp_path / "heads.safetensors"
    argv = ["heads", "--checkpoint", str(char_gpt), "--text", str(text), "--out", str(out),
            "--k", "3", "--steps", "20", "--batch-size", "4"]  # fmt: skip
    assert main(argv) == 0
    assert "heads for blocks of 3" in capsys.readouterr().err
    heads = load_heads(out, d_model=32)
    assert heads.k == 3 and len(heads.heads) == 2
    assert main(argv) == 2  # the file exists now
    assert "already exists; pass --force" in capsys.readouterr().err
    assert main([*argv, "--force"]) == 0
    generate = ["generate", "--checkpoint", str(char_gpt), "--prompt", "hel", "--temperature",
                "0", "--max-new-tokens", "15", "--no-stream"]  # fmt: skip
    assert main(generate) == 0
    plain = capsys.readouterr().out
    assert main([*generate, "--heads", str(out)]) == 0
    assert capsys.readouterr().out == plain


def test_heads_then_translate_with_them_gives_the_greedy_output(spm_translator, tmp_path, capsys):
    from formers.decoding.blockwise import load_heads

    text = tmp_path / "in.txt"
    text.write_text("the quick brown fox\na cat sat on the mat\nunbelievably, it works\n" * 3)
    out = tmp_path / "heads.safetensors"
    argv = ["heads", "--checkpoint", str(spm_translator), "--source", str(text), "--out",
            str(out), "--k", "3", "--steps", "5", "--batch-size", "4"]  # fmt: skip
    assert main(argv) == 0  # on the model's own translations
    assert "on the model's translations of 9 sentences" in capsys.readouterr().err
    assert load_heads(out, kind="encoder-decoder").k == 3
    plain = _translate(spm_translator, text, tmp_path / "a.txt")
    assert _translate(spm_translator, text, tmp_path / "b.txt", "--heads", str(out)) == plain
    references = tmp_path / "ref.txt"
    references.write_text("der schnelle braune fuchs\n" * 9)
    assert main([*argv, "--target", str(references), "--force", "--sentences", "4"]) == 0
    assert "on 4 references" in capsys.readouterr().err
    assert _translate(spm_translator, text, tmp_path / "c.txt", "--heads", str(out)) == plain
