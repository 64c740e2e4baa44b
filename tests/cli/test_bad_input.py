"""Bad command lines get one clear line and exit code 2, before any work starts.

One row a case: the command (``{name}`` fills in a path from :func:`paths`), the exit code, and
the words the error must contain. Every row runs with decoding, generation, training and export
replaced by a failure, so that a refusal which only comes after the work (and loses it) fails the
row. A new option joins the table with its bad values. The server's table is in test_serve.py
(``test_bad_requests_get_a_clear_4xx``).
"""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

import pytest
import torch

from formers.cli import demo, generate, translate
from formers.cli.main import main
from formers.data.symbol_tokenizer import SymbolTokenizer
from formers.decoding.blockwise import BlockwiseHeads, save_heads
from formers.export import ct2 as export_ct2
from formers.export import onnx as export_onnx
from formers.models import TransformerConfig, build_transformer
from formers.training.checkpoint import save_checkpoint
from formers.training.trainer import Trainer

TRANSLATE = ["translate", "--checkpoint", "{translator}", "--input", "{text}"]
GENERATE = ["generate", "--checkpoint", "{gpt}", "--prompt", "ok"]
TRAIN = ["train", "{recipe}", "--run-dir", "{fresh}", "--no-progress"]
CT2 = ["export", "--to", "ct2", "--checkpoint", "{translator}"]

ROWS = [
    # formers translate: decoding options (their ranges: formers.decoding.options.RANGES)
    ([*TRANSLATE, "--lenpen", "1e308"], 2, ["--lenpen must be a number in [0.0, 10.0]", "1e+308"]),
    ([*TRANSLATE, "--lenpen", "nan"], 2, ["--lenpen must be a finite number"]),
    ([*TRANSLATE, "--lenpen", "-1"], 2, ["--lenpen must be a number in [0.0, 10.0], got -1.0"]),
    ([*TRANSLATE, "--max-len-b", "1000000000"], 2, ["--max-len-b", "[0, 100,000]"]),
    ([*TRANSLATE, "--max-len-a", "1e9"], 2, ["--max-len-a must be a number in [0.0, 10.0]"]),
    ([*TRANSLATE, "--beam", "0"], 2, ["--beam must be an integer in [1, 128], got 0"]),
    ([*TRANSLATE, "--beam", "100000"], 2, ["--beam must be an integer in [1, 128]"]),
    ([*TRANSLATE, "--beam", "2", "--nbest", "3"], 2, ["--nbest must be between 1 and the beam"]),
    ([*TRANSLATE, "--max-tokens", "0"], 2, ["--max-tokens must be an integer in [1, 1,000,000]"]),
    ([*TRANSLATE, "--lenpen-form", "fairseq"], 2, ["lenpen_form must be one of gnmt, power"]),
    ([*TRANSLATE, "--device", "tpu9"], 2, ["unknown device 'tpu9'"]),
    ([*TRANSLATE, "--int8", "--device", "cuda"], 2, ["--int8 runs on a CPU only", "no cuda"]),
    ([*TRANSLATE, "--draft", "{translator}", "--beam", "4"], 2,
     ["--draft decodes greedily: use --beam 1"]),
    ([*TRANSLATE, "--draft", "{translator}", "--beam", "1", "--draft-k", "0"], 2,
     ["--draft-k must be an integer in [1, 16], got 0"]),
    ([*TRANSLATE, "--draft", "{gpt}", "--beam", "1"], 2, ["--draft needs an encoder-decoder"]),
    ([*TRANSLATE, "--draft", "{symbols}", "--beam", "1"], 2,
     ["its tokenizer is not the model's"]),
    # formers translate: paths
    ([*TRANSLATE, "--output", "{folder}"], 2, ["--output", "is a directory"]),
    ([*TRANSLATE, "--output", "{missing}/out.txt"], 2, ["--output", "does not exist"]),
    (["translate", "--checkpoint", "{missing}", "--input", "{text}"], 2, ["no checkpoint"]),
    (["translate", "--checkpoint", "{translator}", "--input", "{missing}"], 2, ["no such file"]),
    # formers generate: sampling options
    ([*GENERATE, "--max-new-tokens", "1000000000"], 2, ["--max-new-tokens", "[1, 100,000]"]),
    ([*GENERATE, "--max-new-tokens", "0"], 2, ["--max-new-tokens must be an integer"]),
    ([*GENERATE, "--temperature", "-1"], 2, ["--temperature must be a number in [0.0, 100.0]"]),
    ([*GENERATE, "--temperature", "inf"], 2, ["--temperature must be a finite number"]),
    ([*GENERATE, "--top-p", "0"], 2, ["--top-p must be a number in (0.0, 1.0]"]),
    ([*GENERATE, "--top-k", "-1"], 2, ["--top-k must be an integer in [0, 1,000,000]"]),
    ([*GENERATE, "--seed", str(2**70)], 2, ["--seed must be an integer in"]),
    (["generate", "--checkpoint", "{translator}", "--prompt", "a"], 2, ["decoder-only", "use"]),
    ([*GENERATE, "--int8", "--device", "cuda:0"], 2, ["--int8 runs on a CPU only"]),
    (["serve", "--checkpoint", "{gpt}", "--int8", "--device", "cuda"], 2,
     ["--int8 runs on a CPU only"]),
    ([*GENERATE, "--draft", "{gpt}"], 2, ["--draft decodes greedily: use --temperature 0"]),
    ([*GENERATE, "--heads", "{text}"], 2, ["--heads decodes greedily: use --temperature 0"]),
    ([*GENERATE, "--heads", "{text}", "--draft", "{gpt}", "--temperature", "0"], 2,
     ["give --draft or --heads, not both"]),
    ([*GENERATE, "--heads", "{text}", "--temperature", "0"], 2,
     ["not a blockwise heads file"]),
    (["heads", "--checkpoint", "{translator}", "--text", "{text}", "--out", "{fresh}"], 2,
     ["holds a translation model: give --source", "not --text"]),
    (["heads", "--checkpoint", "{gpt}", "--source", "{text}", "--out", "{fresh}"], 2,
     ["holds a language model: give --text"]),
    (["heads", "--checkpoint", "{bert}", "--text", "{text}", "--out", "{fresh}"], 2,
     ["does not decode", "a language or translation model"]),
    (["heads", "--checkpoint", "{translator}", "--source", "{text}", "--target", "{recipe}",
      "--out", "{fresh}"], 2, ["--target has 5 lines where --source has 1"]),
    (["heads", "--checkpoint", "{translator}", "--source", "{text}", "--out", "{fresh}",
      "--sentences", "0"], 2, ["--sentences must be >= 1"]),
    ([*TRANSLATE, "--heads", "{text}"], 2, ["--heads decodes greedily: use --beam 1"]),
    ([*TRANSLATE, "--heads", "{text}", "--beam", "1", "--draft", "{translator}"], 2,
     ["give --draft or --heads, not both"]),
    ([*TRANSLATE, "--heads", "{text}", "--beam", "1"], 2, ["not a blockwise heads file"]),
    ([*TRANSLATE, "--heads", "{lm_heads}", "--beam", "1"], 2,
     ["trained for a decoder-only model, not encoder-decoder"]),
    ([*GENERATE, "--heads", "{lm_heads}", "--temperature", "0"], 2,
     ["the heads read states 16 wide, the model's are 32"]),
    (["heads", "--checkpoint", "{gpt}", "--text", "{text}", "--out", "{fresh}", "--k", "1"], 2,
     ["--k must be an integer in [2, 16]"]),
    (["heads", "--checkpoint", "{gpt}", "--text", "{text}", "--out", "{text}"], 2,
     ["already exists; pass --force"]),
    (["heads", "--checkpoint", "{gpt}", "--text", "{text}", "--out", "{missing}/h"], 2,
     ["parent folder does not exist"]),
    ([*GENERATE, "--memory", "0"], 2, ["--memory must be in [1, 100,000]"]),
    ([*GENERATE, "--memory", "-1"], 2, ["--memory must be in [1, 100,000]"]),
    ([*GENERATE, "--memory", "8"], 2, ["memory length is for models with segment memory"]),
    # formers perplexity
    (["perplexity", "--checkpoint", "{gpt}", "--text", "{text}", "--memory", "-1"], 2,
     ["--memory must be >= 0"]),
    (["perplexity", "--checkpoint", "{gpt}", "--text", "{text}", "--memory", "8"], 2,
     ["--memory and --segment are for models with segment memory"]),
    (["perplexity", "--checkpoint", "{gpt}", "--text", "{text}", "--valid-fraction", "1"], 2,
     ["--valid-fraction must be in [0, 1)"]),
    (["perplexity", "--checkpoint", "{translator}", "--text", "{text}"], 2,
     ["decoder-only", "use formers translate"]),
    # corrupted or incomplete checkpoints
    ([*TRANSLATE[:2], "{bad_weights}", *TRANSLATE[3:]], 2, ["tensor", "NaN or infinite"]),
    (["generate", "--checkpoint", "{bad_gpt_weights}"], 2, ["tensor", "NaN or infinite"]),
    (["generate", "--checkpoint", "{bad_chars}"], 2, ["chars.json", "not valid JSON"]),
    ([*TRANSLATE[:2], "{no_symbols}", *TRANSLATE[3:]], 2, ["has no symbols.json"]),
    # formers train
    ([*TRAIN, "--set", "train.lr=inf"], 2, ["lr must be a finite number, got inf"]),
    ([*TRAIN, "--set", "train.lr=1e30"], 2, ["[train] lr must be in (0, 1], got 1e+30"]),
    ([*TRAIN, "--set", "train.max_step=3"], 2, ["unknown TrainConfig key(s) ['max_step']"]),
    ([*TRAIN, "--set", "decode.lenpen=1e308"], 2, ["[decode] lenpen must be a number in"]),
    ([*TRAIN, "--set", "decode.max_len_b=1000000000"], 2, ["[decode] max_len_b", "100,000"]),
    ([*TRAIN, "--set", "train.eps=0"], 2, ["[train] eps must be in (0, 1)"]),
    (["train", "{recipe}", "--run-dir", "{previous}"], 2, ["a previous run", "--overwrite"]),
    (["train", "{recipe}", "--resume", "--overwrite"], 2, ["not allowed with argument"]),
    (["train", "{missing}/recipe.toml"], 2, ["config file not found"]),
    # formers export
    (["export", "--to", "ct2", "--checkpoint", "{bert}", "--out", "{fresh}"], 2,
     ["architecture 'bert' cannot be exported to CTranslate2", "exportable: transformer, gpt"]),
    (["export", "--to", "onnx", "--checkpoint", "{bert}", "--out", "{fresh}"], 2,
     ["architecture 'bert' cannot be exported to ONNX", "exportable: transformer, gpt"]),
    ([*CT2, "--out", "{folder}"], 2, ["already exists; pass --force"]),
    ([*CT2, "--out", "{text}", "--force"], 2, ["exists and is not a directory"]),
    ([*CT2, "--out", "{missing}/model"], 2, ["parent folder", "does not exist"]),
    ([*CT2, "--out", "{fresh}", "--quantization", "int4"], 2,
     ["quantization 'int4' is not offered for ct2", "int8, int8_float32"]),
    (["export", "--to", "onnx", "--checkpoint", "{translator}", "--out", "{fresh}",
      "--quantization", "int8"], 2, ["quantization 'int8' is not offered for onnx"]),
    (["export", "--to", "tflite", "--checkpoint", "{translator}", "--out", "{fresh}"], 2,
     ["invalid choice: 'tflite'"]),
    (["export", "--to", "ct2", "--checkpoint", "{missing}", "--out", "{fresh}"], 2,
     ["no checkpoint"]),
    # formers demo
    (["demo", "--save", "{folder}"], 2, ["holds files that are not part of a checkpoint"]),
    (["demo", "--save", "{missing}/ckpt"], 2, ["does not exist"]),
    (["demo", "--steps", "0"], 2, ["--steps and --batch-size must be >= 1"]),
]


def _corrupt_weights(checkpoint: Path, out: Path) -> Path:
    """A copy whose tensor data is random bytes behind an intact safetensors header."""
    shutil.copytree(checkpoint, out)
    weights = out / "model.safetensors"
    data = bytearray(weights.read_bytes())
    start = 8 + struct.unpack("<Q", data[:8])[0]  # the header's length, then the header
    data[start:] = os.urandom(len(data) - start)
    weights.write_bytes(bytes(data))
    return out


@pytest.fixture(scope="module")
def paths(tmp_path_factory, spm_translator, char_gpt, bert_classifier) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad_input")
    (root / "folder").mkdir()
    (root / "folder" / "notes.txt").write_text("not a checkpoint\n")
    (root / "text.txt").write_text("the cat sat on the mat\n")
    recipe = root / "recipe.toml"
    recipe.write_text('[data]\ntrain_src = "a.en"\ntrain_tgt = "a.de"\n[train]\nmax_steps = 2\n')
    previous = root / "previous"
    previous.mkdir()
    (previous / "log.jsonl").write_text('{"type": "train", "step": 1}\n')
    torch.manual_seed(0)
    model = build_transformer(TransformerConfig(vocab_size=13, d_model=16, d_ff=32, num_heads=2,
                                                num_encoder_layers=1, num_decoder_layers=1))
    no_symbols = root / "no_symbols"
    save_checkpoint(no_symbols, model, model.config.to_dict(), tokenizer=SymbolTokenizer(10))
    save_checkpoint(root / "symbols", model, model.config.to_dict(), tokenizer=SymbolTokenizer(10))
    (no_symbols / "symbols.json").unlink()
    save_heads(BlockwiseHeads(16, 3), root / "lm_heads.safetensors", kind="decoder-only")
    bad_chars = Path(shutil.copytree(char_gpt, root / "bad_chars"))
    (bad_chars / "chars.json").write_text('{"chars": ["a", ')
    return {
        "translator": spm_translator, "gpt": char_gpt, "folder": root / "folder",
        "text": root / "text.txt", "missing": root / "missing", "recipe": recipe,
        "fresh": root / "fresh", "previous": previous, "no_symbols": no_symbols,
        "bad_chars": bad_chars, "bert": bert_classifier, "symbols": root / "symbols",
        "bad_weights": _corrupt_weights(spm_translator, root / "bad_weights"),
        "bad_gpt_weights": _corrupt_weights(char_gpt, root / "bad_gpt_weights"),
        "lm_heads": root / "lm_heads.safetensors",
    }  # fmt: skip


@pytest.fixture(autouse=True)
def no_work(monkeypatch):
    """Decoding, generation and training fail the test: every refusal comes first."""

    def fail(*args, **kwargs):
        pytest.fail("the work started before the bad input was refused")

    monkeypatch.setattr(translate, "translate", fail)
    monkeypatch.setattr(generate, "generate_stream", fail)
    monkeypatch.setattr(demo, "train_synthetic", fail)
    monkeypatch.setattr(Trainer, "fit", fail)
    monkeypatch.setattr(export_ct2, "export_ct2", fail)
    monkeypatch.setattr(export_onnx, "export_onnx", fail)


def run(command: list[str]) -> int:
    """``formers COMMAND``'s exit code (argparse's own errors exit through SystemExit)."""
    try:
        return main(command)
    except SystemExit as exit:
        return int(exit.code)


@pytest.mark.parametrize(("argv", "code", "words"), ROWS, ids=[" ".join(r[0]) for r in ROWS])
def test_bad_command_lines_get_one_clear_line(paths, capsys, argv, code, words):
    exit_code = run([arg.format(**paths) for arg in argv])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert exit_code == code, lines
    assert lines[-1].startswith(f"formers {argv[0]}: error: "), lines
    assert len(lines) == 1 or lines[0].startswith("usage:"), lines  # argparse: usage, error
    for word in words:
        assert word in lines[-1], f"{word!r} not in {lines[-1]!r}"
