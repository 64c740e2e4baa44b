"""Do the exported models decode a trained checkpoint's test set as formers does?

Exports ``--checkpoint`` to CTranslate2 (float32) and ONNX, then decodes every sentence of
``--input`` with formers (fp32 and ``--int8``), CTranslate2 and ONNX Runtime: greedy, and beam
``--beam`` with the length penalty ``n ** --lenpen`` (fairseq's form, which CTranslate2 uses;
ONNX Runtime greedy only). Writes how many outputs are identical to formers fp32's and, with
``--references``, the BLEU of each (tokenized, lowercased: sacreBLEU with ``tokenize="none"``).

Where an output differs from formers fp32's, both are scored by formers' fp32 model (teacher
forcing, log-probabilities with the EOS): ``differences`` gives the first differing position, the
log-probability margin there between formers' token and the other (the two share the prefix, so
for greedy search it is how near the choice was to a tie) and each output's score under the
length penalty (what beam search ranks by).

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
from formers.inference.translate import translate
from formers.training.checkpoint import load_model


def _lines(path: str) -> list[str]:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def same_length_batches(lengths: list[int], size: int = 64) -> list[list[int]]:
    """Indices in batches of at most ``size`` sources of one length each: the runtimes take one
    length limit per batch, and formers limits each source by its own length."""
    groups: dict[int, list[int]] = {}
    for i, n in enumerate(lengths):
        groups.setdefault(n, []).append(i)
    return [g[k : k + size] for _, g in sorted(groups.items()) for k in range(0, len(g), size)]


def _ct2(out: Path, tokenizer: Any, lines: list[str], beam: int, args) -> list[list[int]]:
    import ctranslate2

    translator = ctranslate2.Translator(str(out), device="cpu", intra_threads=args.threads)
    index = {p: i for i, p in enumerate(tokenizer.pieces(range(tokenizer.vocab_size)))}
    sources = [tokenizer.pieces(tokenizer.encode(line)) for line in lines]
    found: list[list[int]] = [[] for _ in sources]
    for batch in same_length_batches([len(s) for s in sources]):
        results = translator.translate_batch(
            [sources[i] for i in batch], beam_size=beam, length_penalty=args.lenpen,
            max_decoding_length=int(args.max_len_a * len(sources[batch[0]]) + args.max_len_b) - 1,
            suppress_sequences=[[piece] for piece in tokenizer.pieces([0, 1])],  # pad, BOS
            return_end_token=True,  # so that the length penalty counts the EOS, as formers'
        )  # fmt: skip
        for i, r in zip(batch, results, strict=True):
            found[i] = [index[p] for p in r.hypotheses[0] if index[p] != 2]
    return found


def _onnx(out: Path, tokenizer: Any, lines: list[str], args) -> list[list[int]]:
    runtime = OnnxTranslator(out, threads=args.threads)
    ids = [tokenizer.encode(line) for line in lines]
    found: list[list[int]] = [[] for _ in ids]
    for batch in same_length_batches([len(x) for x in ids]):
        src = np.array([ids[i] for i in batch], np.int64)
        limit = int(args.max_len_a * src.shape[1] + args.max_len_b)
        for i, row in zip(batch, runtime.greedy(src, limit), strict=True):
            found[i] = row
    return found


@torch.no_grad()
def differences(model: Any, tokenizer: Any, lines: list[str], found: list[list[int]],
                ours: list[list[int]], lenpen: float) -> list[dict[str, Any]]:  # fmt: skip
    """Each sentence whose ``found`` output is not ``ours``, scored by ``model`` (see above)."""
    rows = []
    for i, (theirs, mine) in enumerate(zip(found, ours, strict=True)):
        if theirs == mine:
            continue
        src = torch.tensor([tokenizer.encode(lines[i])])
        scored = []
        for out in (mine, theirs):
            tgt = torch.tensor([[model.bos_id, *out]])
            lprobs = model(src, tgt).log_softmax(dim=-1)[0]  # (len + 1, V)
            steps = lprobs.gather(1, torch.tensor([*out, model.eos_id])[:, None])[:, 0]
            scored.append((lprobs, float(steps.sum()) / (len(out) + 1) ** lenpen))
        pairs = enumerate(zip(mine, theirs, strict=False))
        first = next((j for j, (a, b) in pairs if a != b), min(len(mine), len(theirs)))
        mine_at, theirs_at = ((out + [model.eos_id])[first] for out in (mine, theirs))
        at = scored[0][0][first]
        rows.append({
            "sentence": i + 1,
            "first_difference": first,
            "margin_at_difference": float(at[mine_at] - at[theirs_at]),
            "score_formers": scored[0][1],
            "score_other": scored[1][1],
        })  # fmt: skip
    return rows


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
        if name.split(" ")[0] in ("ct2", "onnxruntime"):  # fp32, as formers'
            row["differences"] = differences(model, tokenizer, lines, found, ours, args.lenpen)
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
