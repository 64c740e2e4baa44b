"""Do the exported models decode a trained checkpoint's test set as formers does?

Exports ``--checkpoint`` to CTranslate2 (float32) and ONNX, then decodes every sentence of
``--input`` with formers (fp32 and ``--int8``), CTranslate2 and ONNX Runtime: greedy, and beam
``--beam`` with the length penalty ``n ** --lenpen`` (fairseq's form, which CTranslate2 uses;
ONNX Runtime greedy only). Writes how many outputs are identical to formers fp32's and, with
``--references``, the BLEU of each (tokenized, lowercased: sacreBLEU with ``tokenize="none"``).

Usage::

    python benchmarks/export_parity.py --checkpoint runs/multi30k_en_de_cpu/average \\
        --input ../shared/data/multi30k/tok/test_2016_flickr.lc.norm.tok.en.gz \\
        --references ../shared/data/multi30k/tok/test_2016_flickr.lc.norm.tok.de.gz
"""

from __future__ import annotations

import argparse
import gzip
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import ROOT, print_footer, result_header, write_result

from formers.evaluation.bleu import corpus_scores
from formers.export import export_checkpoint
from formers.export.onnx import OnnxTranslator
from formers.inference.int8 import quantize_int8
from formers.inference.layout import use_inference_layout
from formers.inference.translate import length_batches, translate
from formers.training.checkpoint import load_model


def _lines(path: str) -> list[str]:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def _ct2(out: Path, tokenizer: Any, lines: list[str], beam: int, args) -> list[list[int]]:
    import ctranslate2

    translator = ctranslate2.Translator(str(out), device="cpu", intra_threads=args.threads)
    index = {p: i for i, p in enumerate(tokenizer.pieces(range(tokenizer.vocab_size)))}
    sources = [tokenizer.pieces(tokenizer.encode(line)) for line in lines]
    limits = [int(args.max_len_a * len(s) + args.max_len_b) - 1 for s in sources]
    found = []
    for start in range(0, len(sources), 64):  # one limit per batch: its longest source's
        chunk = sources[start : start + 64]
        results = translator.translate_batch(
            chunk, beam_size=beam, length_penalty=args.lenpen, max_batch_size=64,
            max_decoding_length=max(limits[start : start + 64]),
            suppress_sequences=[[piece] for piece in tokenizer.pieces([0, 1])],  # pad, BOS
            return_end_token=True,  # so that the length penalty counts the EOS, as formers'
        )  # fmt: skip
        found += [[index[p] for p in r.hypotheses[0] if index[p] != 2] for r in results]
    return found


def _onnx(out: Path, tokenizer: Any, lines: list[str], args) -> list[list[int]]:
    runtime = OnnxTranslator(out, threads=args.threads)
    ids = [tokenizer.encode(line) for line in lines]
    found: list[list[int] | None] = [None] * len(ids)
    for batch in length_batches([len(x) for x in ids], 4096, 64):
        width = max(len(ids[i]) for i in batch)
        src = np.array([ids[i] + [0] * (width - len(ids[i])) for i in batch], np.int64)
        limit = int(args.max_len_a * width + args.max_len_b)
        for i, row in zip(batch, runtime.greedy(src, limit), strict=True):
            found[i] = row
    return found  # type: ignore[return-value]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--references")
    p.add_argument("--beam", type=int, default=4)
    p.add_argument("--lenpen", type=float, default=1.0)
    p.add_argument("--max-len-a", type=float, default=1.0)
    p.add_argument("--max-len-b", type=int, default=50)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/export_parity.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    lines = _lines(args.input)
    model, tokenizer, _ = load_model(args.checkpoint)
    int8 = quantize_int8(model)
    use_inference_layout(model)
    options = dict(lenpen_form="power", lenpen=args.lenpen, max_len_a=args.max_len_a,
                   max_len_b=args.max_len_b)  # fmt: skip
    outputs: dict[str, list[list[int]]] = {}
    seconds: dict[str, float] = {}

    def run(name: str, fn) -> None:
        start = time.perf_counter()
        outputs[name] = fn()
        seconds[name] = time.perf_counter() - start

    with tempfile.TemporaryDirectory() as work:
        ct2_dir = export_checkpoint(args.checkpoint, "ct2", Path(work) / "ct2")
        onnx_dir = export_checkpoint(args.checkpoint, "onnx", Path(work) / "onnx")
        for beam in (1, args.beam):
            for name, m in (("formers", model), ("formers-int8", int8)):
                run(
                    f"{name} beam {beam}",
                    lambda m=m, beam=beam: [
                        h[0].tokens for h in translate(m, tokenizer, lines, beam=beam, **options)
                    ],
                )
            run(f"ct2 beam {beam}", lambda beam=beam: _ct2(ct2_dir, tokenizer, lines, beam, args))
        run("onnxruntime beam 1", lambda: _onnx(onnx_dir, tokenizer, lines, args))
    rows: dict[str, Any] = {}
    references = _lines(args.references) if args.references else None
    for name, found in outputs.items():
        beam = name.rsplit(" ", 1)[1]
        ours = outputs[f"formers beam {beam}"]
        row: dict[str, Any] = {
            "identical_to_formers_fp32": sum(a == b for a, b in zip(found, ours, strict=True)),
            "sentences": len(lines),
            "seconds": seconds[name],
        }
        if references:
            hyps = [tokenizer.decode(ids) for ids in found]
            row.update(corpus_scores(hyps, references, tokenized=True))
        rows[name] = row
    result = {
        **result_header("export_parity", argv, torch.device("cpu")),
        "checkpoint": args.checkpoint,
        "decoding": {
            "beam": args.beam,
            "lenpen": args.lenpen,
            "lenpen_form": "power",
            "max_len_a": args.max_len_a,
            "max_len_b": args.max_len_b,
        },  # fmt: skip
        "rows": rows,
    }
    write_result(args.out, result)
    for name, row in rows.items():
        bleu = f"  BLEU {row['bleu']:.2f}" if "bleu" in row else ""
        print(f"{name:22s} identical {row['identical_to_formers_fp32']:4d} of {row['sentences']}"
              f"  {row['seconds']:6.1f} s{bleu}")  # fmt: skip
    print_footer([], time.perf_counter() - t_start, args.out)
    return result


if __name__ == "__main__":
    main()
