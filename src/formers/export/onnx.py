"""Export a checkpoint to ONNX (``torch.onnx.export`` with the dynamo exporter) for ONNX
Runtime, and decode greedily on the exported graphs.

- An encoder-decoder (``transformer``) becomes ``encoder.onnx`` and ``decoder_step.onnx``;
  :class:`OnnxTranslator` translates with them.
- A decoder-only model (``gpt``) becomes ``decoder_step.onnx`` alone (new tokens and the past
  keys and values -> the next-token logits and the grown keys and values); :class:`OnnxGenerator`
  continues prompts with it as ``formers generate --temperature 0`` does.

See :mod:`formers.export.onnx_graphs` for the graphs' inputs and outputs. ``onnx_config.json``
holds the tensor names, layer count, key/value heads, head width and special ids a runtime needs;
the tokenizer is written beside them. Batch, lengths and past length are dynamic, up to the
model's positions. Other families are refused with the reason.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from formers.export.common import ExportError, require_module
from formers.export.onnx_graphs import DecoderStepGraph, EncoderGraph, LanguageModelStepGraph

CONFIG = "onnx_config.json"
OPSET = 18
FAMILIES = ("transformer", "gpt")


def check_onnx(architecture: str) -> None:
    """Refuse, before loading anything, a family without exported graphs."""
    if architecture not in FAMILIES:
        raise ExportError(
            f"architecture {architecture!r} cannot be exported to ONNX: its step graphs are not "
            f"written (exportable: {', '.join(FAMILIES)})"
        )


def _names(num_layers: int, kinds: tuple[str, str]) -> list[str]:
    return [f"{kind}_{i}" for i in range(num_layers) for kind in kinds]


def export_onnx(model: nn.Module, tokenizer: Any, architecture: str, out: Path) -> Path:
    """Write the graphs and ``onnx_config.json`` into ``out`` (``encoder.onnx`` and
    ``decoder_step.onnx`` for a translation model, ``decoder_step.onnx`` for a language model).
    """
    check_onnx(architecture)
    require_module("onnxscript", "export to ONNX")  # the dynamo exporter's translator
    model = model.eval()
    config = (_export_language_model if architecture == "gpt" else _export_translation)(model, out)
    (out / CONFIG).write_text(json.dumps({**config, "opset": OPSET}, indent=2) + "\n")
    return out


def _export_language_model(model: nn.Module, out: Path) -> dict[str, Any]:
    cfg = model.config
    layers, limit = cfg.num_layers, cfg.context_length
    batch = torch.export.Dim("batch", max=4096)
    new = torch.export.Dim("new_len", max=limit)
    past = torch.export.Dim("past_len", max=limit - 1)
    g, dh = cfg.kv_heads, cfg.head_dim
    pasts = tuple(torch.randn(2, g, 3, dh) for _ in range(2 * layers))
    tokens = torch.tensor([[3, 4], [5, 6]]).clamp(max=cfg.vocab_size - 1)  # (2, 2)
    past_names, present_names = (_names(layers, ("past_k", "past_v")),
                                 _names(layers, ("present_k", "present_v")))  # fmt: skip
    _export(
        LanguageModelStepGraph(model), (tokens, *pasts), out / "decoder_step.onnx",
        ["tokens", *past_names], ["logits", *present_names],
        {"tokens": {0: batch, 1: new}, "past": tuple([{0: batch, 2: past}] * (2 * layers))},
    )  # fmt: skip
    return {
        "kind": "language_model", "num_layers": layers, "kv_heads": g, "head_dim": dh,
        "context_length": limit, "eos_id": cfg.eos_id, "bos_id": cfg.bos_id,
        "decoder_step": {"inputs": ["tokens", *past_names], "outputs": ["logits", *present_names]},
    }  # fmt: skip


def _export_translation(model: nn.Module, out: Path) -> dict[str, Any]:
    cfg = model.config
    layers = cfg.num_decoder_layers
    limit = cfg.max_positions
    batch = torch.export.Dim("batch", max=4096)
    src_len = torch.export.Dim("src_len", max=limit)
    past = torch.export.Dim("past_len", max=limit - 1)
    src = torch.tensor([[4, 5, 6, 7], [5, 6, cfg.pad_id, cfg.pad_id]])  # (2, 4), one padded
    src = src.clamp(max=cfg.vocab_size - 1)
    cross_names, past_names = (
        _names(layers, ("cross_k", "cross_v")),
        _names(layers, ("past_k", "past_v")),
    )
    present_names = _names(layers, ("present_k", "present_v"))
    with torch.no_grad():
        encoded = EncoderGraph(model)(src)
    _export(
        EncoderGraph(model), (src,), out / "encoder.onnx", ["src"], ["src_mask", *cross_names],
        {"src": {0: batch, 1: src_len}},
    )  # fmt: skip
    g, dh = cfg.kv_heads, cfg.head_dim
    pasts = tuple(torch.randn(2, g, 3, dh) for _ in range(2 * layers))
    tokens = torch.full((2, 1), cfg.bos_id)
    states = tuple([{0: batch, 2: src_len}] * (2 * layers) + [{0: batch, 2: past}] * (2 * layers))
    _export(
        DecoderStepGraph(model), (tokens, encoded[0], *encoded[1:], *pasts),
        out / "decoder_step.onnx", ["tokens", "src_mask", *cross_names, *past_names],
        ["logits", *present_names],
        {"tokens": {0: batch}, "src_mask": {0: batch, 1: src_len}, "states": states},
    )  # fmt: skip
    return {
        "kind": "translation", "num_layers": layers, "kv_heads": g, "head_dim": dh,
        "max_positions": limit, "pad_id": cfg.pad_id, "bos_id": cfg.bos_id, "eos_id": cfg.eos_id,
        "encoder": {"inputs": ["src"], "outputs": ["src_mask", *cross_names]},
        "decoder_step": {
            "inputs": ["tokens", "src_mask", *cross_names, *past_names],
            "outputs": ["logits", *present_names],
        },
    }  # fmt: skip


def _export(
    module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str],
    dynamic: dict[str, Any],
) -> None:  # fmt: skip
    """One graph through the dynamo exporter (its progress lines kept off the user's stdout)."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        # the exporter's notes on renamed axes and pytree deprecations are not the user's
        warnings.filterwarnings("ignore", message=".*axis name.*", category=UserWarning)
        warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
        program = torch.onnx.export(
            module.eval(), args, dynamo=True, input_names=inputs, output_names=outputs,
            dynamic_shapes=dynamic, opset_version=OPSET, verbose=False,
        )  # fmt: skip
    program.save(str(path))


class _OnnxRunner:
    """What both decoders share: the export's config, an ONNX Runtime session per graph (CPU,
    ``threads`` intra-op), the empty past and one run of the decoder step."""

    def __init__(self, directory: str | Path, threads: int | None, kind: str,
                 graphs: tuple[str, ...]) -> None:  # fmt: skip
        ort = require_module("onnxruntime", "running an ONNX export")
        directory = Path(directory)
        self.config = json.loads((directory / CONFIG).read_text())
        found = self.config.get("kind", "translation")
        if found != kind:
            name = {"translation": "translation", "language_model": "language model"}
            raise ExportError(f"{directory} holds a {name[found]} export, not a {name[kind]} one")
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        self.sessions = [
            ort.InferenceSession(str(directory / name), options, providers=providers)
            for name in graphs
        ]

    def empty_past(self, batch: int) -> list[np.ndarray]:
        """Every layer's self-attention keys and values before the first step: ``(b, g, 0, dh)``."""
        c = self.config
        empty = np.zeros((batch, c["kv_heads"], 0, c["head_dim"]), np.float32)
        return [empty] * (2 * c["num_layers"])

    def _run_step(self, *inputs: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        names = self.config["decoder_step"]["inputs"]
        logits, *present = self.step.run(None, dict(zip(names, inputs, strict=True)))
        return logits, present


class OnnxTranslator(_OnnxRunner):
    """Greedy decoding with ONNX Runtime on an exported directory (the reference loop people
    would write: encode once, then one decoder step a token with the grown keys and values).

    Args:
        directory: what :func:`~formers.export.export_checkpoint` wrote with ``to="onnx"``.
        threads: ONNX Runtime's intra-op threads (``None``: its default).
    """

    def __init__(self, directory: str | Path, threads: int | None = None) -> None:
        super().__init__(directory, threads, "translation", ("encoder.onnx", "decoder_step.onnx"))
        self.encoder, self.step = self.sessions

    def encode(self, src: np.ndarray) -> list[np.ndarray]:
        """``(b, s)`` int64 source ids -> ``[src_mask, cross k/v ...]``."""
        return self.encoder.run(None, {"src": src})

    def step_logits(self, tokens: np.ndarray, encoded: list[np.ndarray],
                    past: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:  # fmt: skip
        """One decoder step: ``(b, t)`` tokens -> ``(b, V)`` logits and the grown past."""
        return self._run_step(tokens, *encoded, *past)

    def greedy(self, src: np.ndarray, max_len: int, min_len: int = 0) -> list[list[int]]:
        """Greedy outputs of ``(b, s)`` sources (right-padded), without their EOS, by formers'
        rules: at most ``max_len`` tokens with the EOS (forced at the limit), no EOS before
        ``min_len`` tokens, never padding or BOS."""
        c = self.config
        b = src.shape[0]
        encoded = self.encode(src)
        past = self.empty_past(b)
        tokens = np.full((b, 1), c["bos_id"], np.int64)
        out = np.zeros((b, max_len), np.int64)
        lengths = np.full(b, max_len)  # tokens before the EOS
        for step in range(max_len):
            logits, past = self.step_logits(tokens, encoded, past)
            logits[:, [c["pad_id"], c["bos_id"]]] = -np.inf
            if step < min_len:
                logits[:, c["eos_id"]] = -np.inf
            best = logits.argmax(-1)
            if step == max_len - 1:
                best[:] = c["eos_id"]
            ended = (best == c["eos_id"]) & (lengths == max_len)
            lengths[ended] = step
            out[:, step] = best
            if (lengths < max_len).all():
                break
            tokens = best[:, None].astype(np.int64)
        return [row[:n].tolist() for row, n in zip(out, lengths, strict=True)]


class OnnxGenerator(_OnnxRunner):
    """Greedy continuation of prompts with ONNX Runtime on a decoder-only export, by the rules of
    :func:`formers.inference.generate.generate` with ``temperature=0``: the prompt in one pass,
    then one token a step with the grown keys and values; once the context is full, every step
    reads the last ``context_length`` tokens afresh (an empty past).

    Args:
        directory: what :func:`~formers.export.export_checkpoint` wrote with ``to="onnx"`` for a
            ``gpt`` checkpoint.
        threads: ONNX Runtime's intra-op threads (``None``: its default).
    """

    def __init__(self, directory: str | Path, threads: int | None = None) -> None:
        super().__init__(directory, threads, "language_model", ("decoder_step.onnx",))
        (self.step,) = self.sessions

    def step_logits(self, tokens: np.ndarray,
                    past: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:  # fmt: skip
        """``(b, t)`` new tokens -> the ``(b, V)`` next-token logits and the grown past."""
        return self._run_step(tokens, *past)

    def greedy(self, prompt: list[int], max_new_tokens: int, stop_at_eos: bool = True) -> list[int]:
        """The new tokens after ``prompt`` (EOS included when it ends them)."""
        c = self.config
        context, eos = c["context_length"], c["eos_id"]
        tokens = list(prompt) or ([c["bos_id"]] if c["bos_id"] is not None else [])
        if not 0 < len(tokens) <= context:
            raise ValueError(f"the prompt must have 1 to {context} tokens, got {len(tokens)}")
        logits, past = self.step_logits(np.array([tokens], np.int64), self.empty_past(1))
        new: list[int] = []
        while True:
            token = int(logits[0].argmax())
            new.append(token)
            if (stop_at_eos and token == eos) or len(new) == max_new_tokens:
                return new
            tokens.append(token)
            if past[0].shape[2] < context:
                logits, past = self.step_logits(np.array([[token]], np.int64), past)
            else:  # the window slides: no cached keys can be reused
                window = np.array([tokens[-context:]], np.int64)
                logits, past = self.step_logits(window, self.empty_past(1))
