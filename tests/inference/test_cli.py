"""``formers translate`` end to end from a saved checkpoint; bad options and input get one line."""

import io
import sys

import pytest

from formers.cli.main import main
from formers.device import resolve_device
from formers.inference import translate
from formers.training.checkpoint import save_checkpoint
from inference.helpers import PARALLEL, tiny_config, tiny_model, train_tokenizer

SOURCES = [src for src, _ in PARALLEL]
DECODING = ["--beam", "3", "--max-len-b", "4"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny untrained model and its tokenizer, saved as the trainer saves them."""
    tok = train_tokenizer()
    model = tiny_model(vocab_size=tok.vocab_size, seed=2)
    directory = tmp_path_factory.mktemp("run") / "checkpoint"
    config = tiny_config(tok.vocab_size).to_dict()
    save_checkpoint(directory, model, config, tokenizer=tok)
    return directory, model, tok


@pytest.fixture(scope="module")
def recipe_checkpoint(checkpoint, tmp_path_factory):
    """The same checkpoint with a recipe's [decode] table in its config.json."""
    directory, model, tok = checkpoint
    recipe = tmp_path_factory.mktemp("recipe") / "checkpoint"
    decode = {"beam": 3, "lenpen": 2.0, "lenpen_form": "power", "max_len_a": 0.0, "max_len_b": 4}
    config = {"model": tiny_config(tok.vocab_size).to_dict(), "decode": decode}
    save_checkpoint(recipe, model, config, tokenizer=tok)
    return recipe, decode


def _stdin(monkeypatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("formers translate: error:")
    assert len(err.splitlines()) == 1
    return err


def test_translates_a_file_in_input_order(checkpoint, tmp_path, capsys):
    directory, model, tok = checkpoint
    source = tmp_path / "src.txt"
    source.write_text("\n".join(SOURCES) + "\n", encoding="utf-8")
    output = tmp_path / "out.txt"
    args = ["translate", "--checkpoint", str(directory), "--input", str(source)]
    assert main([*args, "--output", str(output), *DECODING, "--max-tokens", "30"]) == 0
    expected = [h[0].text for h in translate(model, tok, SOURCES, beam=3, max_len_b=4)]
    assert output.read_text(encoding="utf-8").splitlines() == expected
    assert capsys.readouterr().out == ""


def test_reads_stdin_and_writes_stdout(checkpoint, monkeypatch, capsys):
    directory, model, tok = checkpoint
    _stdin(monkeypatch, ("\n".join(SOURCES[::-1]) + "\n").encode())
    assert main(["translate", "--checkpoint", str(directory), *DECODING, "--device", "cpu"]) == 0
    expected = [h[0].text for h in translate(model, tok, SOURCES[::-1], beam=3, max_len_b=4)]
    assert capsys.readouterr().out.splitlines() == expected


def test_nbest_lines_have_index_score_and_text(checkpoint, monkeypatch, capsys):
    directory, model, tok = checkpoint
    _stdin(monkeypatch, "\n".join(SOURCES[:2]).encode())  # no final newline
    assert main(["translate", "--checkpoint", str(directory), *DECODING, "--nbest", "2"]) == 0
    lines = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    expected = translate(model, tok, SOURCES[:2], beam=3, nbest=2, max_len_b=4)
    assert [int(i) for i, _, _ in lines] == [0, 0, 1, 1]
    assert [text for _, _, text in lines] == [h.text for hyps in expected for h in hyps]
    scores = [float(s) for _, s, _ in lines]
    assert scores[0] >= scores[1] and scores[2] >= scores[3]
    assert scores[0] == pytest.approx(expected[0][0].score, abs=1e-4)


def test_lenpen_form_power_scores_as_the_library(checkpoint, monkeypatch, capsys):
    directory, model, tok = checkpoint
    _stdin(monkeypatch, SOURCES[0].encode())
    options = ["--nbest", "2", "--lenpen", "1.0", "--lenpen-form", "power"]
    assert main(["translate", "--checkpoint", str(directory), *DECODING, *options]) == 0
    lines = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    expected = translate(model, tok, SOURCES[:1], beam=3, nbest=2, max_len_b=4, lenpen=1.0,
                         lenpen_form="power")  # fmt: skip
    assert [float(s) for _, s, _ in lines] == pytest.approx(
        [h.score for h in expected[0]], abs=1e-4
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--beam", "0"], "--beam must be an integer in [1, 128], got 0"),
        (["--beam", "2", "--nbest", "3"], "--nbest must be between 1 and the beam size"),
        (["--max-tokens", "-5"], "--max-tokens must be an integer in [1, 1,000,000], got -5"),
        (["--max-len-a", "-1"], "--max-len-a must be a number in [0.0, 10.0], got -1.0"),
        (["--max-len-b", "-1"], "--max-len-b must be an integer in [0, 100,000], got -1"),
        (["--device", "tpu9"], "unknown device 'tpu9'"),
        (["--lenpen-form", "fairseq"], "lenpen_form must be one of gnmt, power, got 'fairseq'"),
    ],
)
def test_impossible_options_are_refused_before_anything_loads(options, message, capsys):
    assert main(["translate", "--checkpoint", "does-not-matter", *options]) == 2
    assert message in _error(capsys)


def test_input_that_is_not_utf8_names_the_line(checkpoint, tmp_path, monkeypatch, capsys):
    directory = str(checkpoint[0])
    source = tmp_path / "latin1.txt"
    source.write_bytes("a dog\nthe caf\u00e9\n".encode("latin-1"))
    assert main(["translate", "--checkpoint", directory, "--input", str(source)]) == 2
    assert f"{source}, line 2: bytes that are not UTF-8" in _error(capsys)
    _stdin(monkeypatch, b"ok\nstill ok\n\xff\xfe\n")
    assert main(["translate", "--checkpoint", directory]) == 2
    assert "<stdin>, line 3: bytes that are not UTF-8" in _error(capsys)


def test_missing_or_empty_input(checkpoint, tmp_path, monkeypatch, capsys):
    directory, missing = str(checkpoint[0]), tmp_path / "missing.txt"
    assert main(["translate", "--checkpoint", directory, "--input", str(missing)]) == 2
    assert f"no such file: {missing}" in _error(capsys)
    _stdin(monkeypatch, b"")
    assert main(["translate", "--checkpoint", directory]) == 2
    assert "no sentences to translate in <stdin>" in _error(capsys)


def test_a_missing_checkpoint_is_one_line(tmp_path, monkeypatch, capsys):
    _stdin(monkeypatch, b"a dog\n")
    assert main(["translate", "--checkpoint", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in _error(capsys)


def test_a_checkpoint_without_tokenizer_is_refused(tmp_path, monkeypatch, capsys):
    model = tiny_model()
    save_checkpoint(tmp_path / "ckpt", model, tiny_config().to_dict())
    _stdin(monkeypatch, b"a dog\n")
    assert main(["translate", "--checkpoint", str(tmp_path / "ckpt")]) == 2
    assert "has no tokenizer (none of tokenizer.model, chars.json" in _error(capsys)


def test_device_auto_is_cuda_when_available(monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    assert resolve_device("auto").type == "cuda"
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert resolve_device("auto").type == "cpu"
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")


def test_decoding_options_default_to_the_checkpoints_recipe(checkpoint, recipe_checkpoint,
                                                            monkeypatch, capsys):  # fmt: skip
    """Options not given come from the checkpoint's [decode]; a flag given overrides only itself."""
    _, model, tok = checkpoint
    directory, decode = recipe_checkpoint
    _stdin(monkeypatch, SOURCES[0].encode())
    assert main(["translate", "--checkpoint", str(directory), "--nbest", "2"]) == 0
    out, err = capsys.readouterr()
    expected = translate(model, tok, SOURCES[:1], nbest=2, **decode)
    assert [float(line.split("\t")[1]) for line in out.splitlines()] == pytest.approx(
        [h.score for h in expected[0]], abs=1e-4
    )
    assert "from the checkpoint's [decode]: beam=3, lenpen=2.0, lenpen_form=power" in err
    _stdin(monkeypatch, SOURCES[0].encode())
    assert main(["translate", "--checkpoint", str(directory), "--beam", "2", "--nbest", "2"]) == 0
    out, err = capsys.readouterr()
    expected = translate(model, tok, SOURCES[:1], nbest=2, **{**decode, "beam": 2})
    assert [float(line.split("\t")[1]) for line in out.splitlines()] == pytest.approx(
        [h.score for h in expected[0]], abs=1e-4
    )
    assert "beam=" not in err and "lenpen=2.0" in err


def test_the_checkpoint_is_checked_before_the_input_is_read(tmp_path, monkeypatch, capsys):
    """A wrong --checkpoint with empty input names the checkpoint, not the empty input."""
    _stdin(monkeypatch, b"")
    assert main(["translate", "--checkpoint", str(tmp_path / "nope")]) == 2
    assert "no checkpoint directory at" in _error(capsys)


def test_a_language_model_checkpoint_is_refused_by_name(tmp_path, monkeypatch, capsys):
    from formers.models.gpt import GPTConfig, build_gpt

    model = build_gpt(GPTConfig(vocab_size=20, d_model=16, num_layers=1, num_heads=2, d_ff=32))
    save_checkpoint(tmp_path / "lm", model, model.config.to_dict())
    _stdin(monkeypatch, b"a dog\n")
    assert main(["translate", "--checkpoint", str(tmp_path / "lm")]) == 2
    assert "use formers generate for this one" in _error(capsys)


def test_translations_cut_at_the_length_limit_are_named_on_stderr(checkpoint, monkeypatch, capsys):
    directory, model, tok = checkpoint
    _stdin(monkeypatch, "\n".join(SOURCES[:3]).encode() + b"\n")
    argv = ["translate", "--checkpoint", str(directory), "--max-len-a", "0", "--max-len-b", "2"]
    assert main(argv) == 0
    expected = translate(model, tok, SOURCES[:3], max_len_a=0.0, max_len_b=2)
    cut = [i + 1 for i, hyps in enumerate(expected) if hyps[0].truncated]
    assert cut, "the untrained model runs to the limit"
    err = capsys.readouterr().err
    assert f"warning: {len(cut)} of 3 translations reached the length limit (0.0 x " in err
    assert f"lines {', '.join(map(str, cut))}" in err
