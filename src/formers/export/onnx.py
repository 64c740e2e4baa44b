"""Export an encoder-decoder checkpoint to ONNX (``torch.onnx.export`` with the dynamo exporter)
for ONNX Runtime, and run greedy decoding on the exported graphs.

The directory holds ``encoder.onnx`` and ``decoder_step.onnx`` (see
:mod:`formers.export.onnx_graphs` for their inputs and outputs), ``onnx_config.json`` (the
tensor names, layer count, key/value heads, head width and special ids a runtime needs) and the
tokenizer. Batch, source length and past length are dynamic, up to the model's positions.

Only the encoder-decoder ``transformer`` family is exported: the decoder-only and other families
are refused with the reason (their step graphs are not written yet).
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
from formers.export.onnx_graphs import DecoderStepGraph, EncoderGraph

CONFIG = "onnx_config.json"
OPSET = 18


def check_onnx(architecture: str) -> None:
    """Refuse, before loading anything, a family without exported graphs."""
    if architecture != "transformer":
        raise ExportError(
            f"architecture {architecture!r} cannot be exported to ONNX yet: only the "
            "encoder-decoder 'transformer' family has its encoder and decoder-step graphs"
        )


def _names(num_layers: int, kinds: tuple[str, str]) -> list[str]:
    return [f"{kind}_{i}" for i in range(num_layers) for kind in kinds]


def export_onnx(model: nn.Module, tokenizer: Any, architecture: str, out: Path) -> Path:
    """Write ``encoder.onnx``, ``decoder_step.onnx`` and ``onnx_config.json`` into ``out``."""
    check_onnx(architecture)
    require_module("onnxscript", "export to ONNX")  # the dynamo exporter's translator
    model = model.eval()
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
    config = {
        "num_layers": layers, "kv_heads": g, "head_dim": dh, "max_positions": limit,
        "pad_id": cfg.pad_id, "bos_id": cfg.bos_id, "eos_id": cfg.eos_id,
        "encoder": {"inputs": ["src"], "outputs": ["src_mask", *cross_names]},
        "decoder_step": {
            "inputs": ["tokens", "src_mask", *cross_names, *past_names],
            "outputs": ["logits", *present_names],
        },
        "opset": OPSET,
    }  # fmt: skip
    (out / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    return out


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


class OnnxTranslator:
    """Greedy decoding with ONNX Runtime on an exported directory (the reference loop people
    would write: encode once, then one decoder step a token with the grown keys and values).

    Args:
        directory: what :func:`~formers.export.export_checkpoint` wrote with ``to="onnx"``.
        threads: ONNX Runtime's intra-op threads (``None``: its default).
    """

    def __init__(self, directory: str | Path, threads: int | None = None) -> None:
        ort = require_module("onnxruntime", "running an ONNX export")
        directory = Path(directory)
        self.config = json.loads((directory / CONFIG).read_text())
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        self.encoder = ort.InferenceSession(
            str(directory / "encoder.onnx"), options, providers=providers
        )  # noqa: E501
        self.step = ort.InferenceSession(
            str(directory / "decoder_step.onnx"), options, providers=providers
        )  # noqa: E501

    def encode(self, src: np.ndarray) -> list[np.ndarray]:
        """``(b, s)`` int64 source ids -> ``[src_mask, cross k/v ...]``."""
        return self.encoder.run(None, {"src": src})

    def step_logits(self, tokens: np.ndarray, encoded: list[np.ndarray],
                    past: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:  # fmt: skip
        """One decoder step: ``(b, t)`` tokens -> ``(b, V)`` logits and the grown past."""
        names = self.config["decoder_step"]["inputs"]
        feeds = dict(zip(names, [tokens, *encoded, *past], strict=True))
        logits, *present = self.step.run(None, feeds)
        return logits, present

    def greedy(self, src: np.ndarray, max_len: int, min_len: int = 0) -> list[list[int]]:
        """Greedy outputs of ``(b, s)`` sources (right-padded), without their EOS, by formers'
        rules: at most ``max_len`` tokens with the EOS (forced at the limit), no EOS before
        ``min_len`` tokens, never padding or BOS."""
        c = self.config
        b = src.shape[0]
        encoded = self.encode(src)
        empty = np.zeros((b, c["kv_heads"], 0, c["head_dim"]), np.float32)
        past = [empty] * (2 * c["num_layers"])
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
