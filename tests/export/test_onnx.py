"""Export to ONNX: ONNX Runtime, running the exported encoder and decoder step, gives logits
within 1e-4 of formers' own at every step and the same greedy outputs, for every option set.

The reference is ONNX Runtime (a runtime we did not write) executing the exported graphs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from formers.data.symbol_tokenizer import SymbolTokenizer
from formers.inference.translate import translate
from formers.training.checkpoint import load_model

from .helpers import TASK, sources

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from formers.export import export_checkpoint  # noqa: E402
from formers.export.onnx import OnnxTranslator  # noqa: E402

LIMIT = 40


@pytest.fixture(scope="module")
def exported(translator_checkpoint, tmp_path_factory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("onnx") / "model"
    export_checkpoint(translator_checkpoint, "onnx", out)
    return translator_checkpoint, out


def _padded(lines: list[str]) -> np.ndarray:
    tokenizer = SymbolTokenizer(TASK.num_symbols)
    ids = [tokenizer.encode(line) for line in lines]
    width = max(map(len, ids))
    return np.array([row + [tokenizer.pad_id] * (width - len(row)) for row in ids], np.int64)


def test_step_logits_match(exported):
    """Every step's logits, fed the same tokens, for a batch with padded sources."""
    checkpoint, out = exported
    model, _, _ = load_model(checkpoint)
    runtime = OnnxTranslator(out, threads=1)
    src = _padded(sources(16))
    assert (src == 0).any()  # some rows are padded
    encoded = runtime.encode(src)
    state = model.init_decoding(torch.from_numpy(src))
    past = runtime.empty_past(16)
    tokens = np.full((16, 1), model.bos_id, np.int64)
    for _ in range(6):
        logits, past = runtime.step_logits(tokens, encoded, past)
        with torch.no_grad():
            expected = model.decode_step(torch.from_numpy(tokens), state)
        torch.testing.assert_close(torch.from_numpy(logits), expected, atol=1e-4, rtol=1e-4)
        tokens = logits.argmax(-1)[:, None].astype(np.int64)
    assert past[0].shape[2] == 6


def test_greedy_outputs_equal_formers(exported):
    checkpoint, out = exported
    model, tokenizer, _ = load_model(checkpoint)
    lines = sources(48)
    ours = [
        hyps[0].tokens
        for hyps in translate(model, tokenizer, lines, beam=1, max_len_a=0.0, max_len_b=LIMIT)
    ]
    theirs = OnnxTranslator(out, threads=1).greedy(_padded(lines), LIMIT)
    assert len({tuple(o) for o in ours}) > 20
    assert ours == theirs


def test_config_names_the_graph_tensors(exported):
    _, out = exported
    config = json.loads((out / "onnx_config.json").read_text())
    runtime = OnnxTranslator(out)
    assert [i.name for i in runtime.step.get_inputs()] == config["decoder_step"]["inputs"]
    assert [o.name for o in runtime.encoder.get_outputs()] == config["encoder"]["outputs"]


LM_OPTIONS = {
    "gpt2": {},
    "llama": dict(activation="swiglu", norm="rmsnorm", positions="rotary", tie_output=False,
                  bias=False, num_kv_heads=2),
}  # fmt: skip


@pytest.fixture(scope="module", params=sorted(LM_OPTIONS))
def exported_lm(request, tmp_path_factory) -> tuple[Path, Path]:
    from .helpers import char_gpt, save

    model, tokenizer = char_gpt(**LM_OPTIONS[request.param])
    root = tmp_path_factory.mktemp(f"onnx_lm_{request.param}")
    checkpoint = save(root / "ckpt", model, tokenizer)
    return checkpoint, export_checkpoint(checkpoint, "onnx", root / "onnx")


def test_language_model_step_logits_match(exported_lm):
    """The prompt pass and 6 single-token steps, fed the same tokens, for a batch of 3."""
    from formers.export.onnx import OnnxGenerator

    checkpoint, out = exported_lm
    model, tokenizer, _ = load_model(checkpoint)
    runtime = OnnxGenerator(out, threads=1)
    prompts = np.array([tokenizer.encode(text) for text in ("hello", "world", "cafe:")], np.int64)
    tokens, past, cache = prompts, runtime.empty_past(3), model.new_cache()
    for _ in range(7):
        logits, past = runtime.step_logits(tokens, past)
        with torch.no_grad():
            expected = model.decode(torch.from_numpy(tokens), cache)[:, -1]
        torch.testing.assert_close(torch.from_numpy(logits), expected, atol=1e-4, rtol=1e-4)
        tokens = logits.argmax(-1)[:, None].astype(np.int64)
    assert past[0].shape[2] == prompts.shape[1] + 6


def test_language_model_greedy_equals_formers(exported_lm):
    """Past the context (24 positions) too, where both slide the window."""
    from formers.export.onnx import OnnxGenerator
    from formers.inference.generate import generate

    checkpoint, out = exported_lm
    model, tokenizer, _ = load_model(checkpoint)
    runtime = OnnxGenerator(out, threads=1)
    for text in ("hello wor", "ok", "naive cafe, "):
        prompt = tokenizer.encode(text)
        ours = generate(model, prompt, max_new_tokens=30, temperature=0.0)
        assert len(prompt) + len(ours) > model.context_length
        assert runtime.greedy(prompt, 30) == ours
    assert len({tuple(generate(model, tokenizer.encode(t), max_new_tokens=8, temperature=0.0))
                for t in ("hello", "world", "cafe")}) > 1  # fmt: skip


def test_translator_refuses_a_language_model_export(exported_lm):
    from formers.export import ExportError

    with pytest.raises(ExportError, match="holds a language model export, not a translation"):
        OnnxTranslator(exported_lm[1])


def test_generator_refuses_a_translation_export(exported):
    from formers.export import ExportError
    from formers.export.onnx import OnnxGenerator

    with pytest.raises(ExportError, match="holds a translation export, not a language model"):
        OnnxGenerator(exported[1])
