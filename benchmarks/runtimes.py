"""Decoding speed of the same weights in every runtime, side by side in one interleaved run.

The model is a base-sized Marian-shaped Transformer (d_model 512, 6 + 6 layers, 8 heads, d_ff
2,048, vocabulary 8,000, SiLU, shared and tied embeddings, an output bias; random seeded weights
with peaked output distributions, from ``hf_decoding.marian_model``), imported into formers with
``load_hf``. The same weights are decoded by:

- ``formers``: fp32, the CPU weight layout and GEMM backend ``formers translate`` uses
  (:func:`formers.inference.layout.use_inference_layout`; on an AMD CPU, NumPy's OpenBLAS),
  and its flat decoding step (:class:`formers.inference.flat_step.FlatStepDecoder`), as every
  formers row;
- ``formers-mkl``: the same with PyTorch's own product (MKL; ``FORMERS_GEMM=torch``);
- ``formers-int8``: :func:`formers.inference.int8.quantize_int8` (PyTorch dynamic quantization);
- ``transformers``: Hugging Face ``generate``;
- ``ct2`` / ``ct2-int8``: CTranslate2 ``Translator`` on formers' own export
  (:func:`formers.export.ct2.export_ct2`, float32 or ``quantization="int8"``);
- ``onnxruntime``: ONNX Runtime on formers' ONNX export (the encoder and the decoder step with
  its cache), greedy only (:class:`formers.export.onnx.OnnxTranslator`, formers' rules).

Every sentence gets exactly ``N - 1`` tokens (``min``/``max`` lengths; formers and Hugging Face then
add the EOS forced at the limit, one more decoder step that is not counted), so all count the
same tokens; tokens/s counts ``batch x (N - 1)``. Outputs are compared where the precision is the
same (fp32 against formers fp32; ``identical`` in the JSON). Modes: greedy and beam 4, batch 32 and
batch 1 (``--batch-one`` sentences decoded one at a time). Rounds interleave the runtimes,
alternating the order.

Speculative decoding (``speculative_rows.py``): with ``--lm-target``/``--lm-draft`` and
``--mt-target``/``--mt-draft`` (trained checkpoints and their drafts), greedy decoding plainly and
with the draft proposing ``k`` tokens per pass, interleaved: speed-up, mean accepted block,
identical outputs; blockwise parallel decoding too, with ``--lm-blockwise-steps`` (heads trained
here) and ``--mt-heads FILE`` (heads from ``formers heads``).

Usage::

    python benchmarks/runtimes.py                       # 1 thread, base-sized, all runtimes
    python benchmarks/runtimes.py --size tiny --rounds 1 --warmup 0     # smoke run
    python benchmarks/runtimes.py --runtimes \
        --lm-target runs/shakespeare_char_cpu/checkpoints/best \
        --lm-draft runs/shakespeare_char_draft_cpu/checkpoints/best    # speculative rows only
"""

from __future__ import annotations

import argparse
import copy
import importlib.metadata
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import speculative_rows
import torch
from common import (
    ROOT,
    interleaved,
    load_average,
    print_footer,
    result_header,
    speed_rows,
    write_result,
)
from hf_decoding import SIZES, marian_model

from formers.decoding import beam_search, greedy_search

RUNTIMES = (
    "formers", "formers-mkl", "formers-int8", "transformers", "ct2", "ct2-int8", "onnxruntime",
)  # fmt: skip
FP32 = ("formers", "formers-mkl", "transformers", "ct2", "onnxruntime")
# the optional packages some runtimes need, and the extras that install them
NEEDS = {"ctranslate2": ("ct2", "ct2-int8"), "onnxruntime": ("onnxruntime",)}
EXTRAS = {"ctranslate2": "ct2", "onnxruntime": "onnx"}


class Pieces:
    """A vocabulary of names ``t0 .. t{V-1}`` for the exporters (the model has no tokenizer)."""

    def __init__(self, size: int) -> None:
        self.names = [f"t{i}" for i in range(size)]
        self.index = {name: i for i, name in enumerate(self.names)}
        self.unk_id = None

    def pieces(self, ids: list[int]) -> list[str]:
        return [self.names[i] for i in ids]


def ct2_translators(ours, vocab: Pieces, args: argparse.Namespace, work: Path,
                    names: set[str]) -> dict[str, Any]:  # fmt: skip
    """CTranslate2 ``Translator`` s of formers' export for ``names`` (of ``ct2``, ``ct2-int8``);
    none where the model is to run on a GPU and this CTranslate2 build has no CUDA."""
    if not names:
        return {}
    import ctranslate2

    from formers.export.ct2 import export_ct2

    computes = {"ct2": "float32", "ct2-int8": "int8"}
    cuda = args.device == "cuda"
    for name in names:  # from the CPU weights, before the model moves
        export_ct2(ours, vocab, "transformer", work / name, quantization=computes[name])
    if cuda and ctranslate2.get_cuda_device_count() == 0:
        return {}
    threads = {} if cuda else dict(intra_threads=args.threads, inter_threads=1)
    return {
        name: ctranslate2.Translator(str(work / name), device=args.device,
                                     compute_type=computes[name], **threads)
        for name in names
    }  # fmt: skip


def decoders(ours, hf, args: argparse.Namespace, work: Path) -> dict[str, Callable[..., Any]]:
    """``runtime -> decode(src (b, s) tensor, beam) -> (b, N - 1) token ids``, for the runtimes
    of ``args.runtimes`` (only those are exported and loaded)."""
    from formers.export.onnx import OnnxTranslator, export_onnx
    from formers.inference.flat_step import fast_decodable
    from formers.inference.int8 import quantize_int8
    from formers.inference.layout import use_inference_layout

    n, pad = args.new_tokens, hf.config.pad_token_id
    vocab = Pieces(args.vocab)
    wanted = set(args.runtimes)
    cpu = args.device == "cpu"  # int8, the GEMM choice and ONNX Runtime: CPU rows only
    int8 = quantize_int8(ours) if cpu and "formers-int8" in wanted else None
    mkl = None
    if cpu and "formers-mkl" in wanted:
        mkl = use_inference_layout(copy.deepcopy(ours), "torch")
    translators = ct2_translators(ours, vocab, args, work, wanted & {"ct2", "ct2-int8"})
    onnx = None
    if cpu and "onnxruntime" in wanted:
        (work / "onnx").mkdir()
        export_onnx(ours, vocab, "transformer", work / "onnx")
        onnx = OnnxTranslator(work / "onnx", threads=args.threads)
    ours.to(args.device), hf.to(args.device)
    alpha = args.length_penalty

    def formers(model):
        decodable = None if model is None else fast_decodable(model)  # what translate decodes

        def decode(src, beam):
            if model is None:
                return None  # int8 and the CPU's GEMM choice on a GPU: not offered
            common = dict(max_len_a=0.0, max_len_b=n, min_len=n - 1)
            if beam == 1:
                return greedy_search(decodable, src, **common).tokens[:, : n - 1]
            out = beam_search(
                decodable, src, beam_size=beam, length_penalty=lambda length: length**alpha,
                early_stopping=True, forced_eos_log_prob=0.0, **common,
            )  # fmt: skip
            return out.tokens[:, : n - 1]

        return decode

    def transformers(src, beam):
        options = dict(length_penalty=alpha, early_stopping=True) if beam > 1 else {}
        out = hf.generate(
            input_ids=src, attention_mask=src != pad, do_sample=False, num_beams=beam,
            min_new_tokens=n - 1, max_new_tokens=n, bad_words_ids=[[pad]], **options,
        )  # fmt: skip
        return out[:, 1:n]

    def ct2(name):
        def decode(src, beam):
            if name not in translators:
                return None  # this CTranslate2 build has no CUDA
            found = translators[name].translate_batch(
                [vocab.pieces(row) for row in src.tolist()], beam_size=beam,
                length_penalty=alpha, min_decoding_length=n - 1, max_decoding_length=n - 1,
                suppress_sequences=[[vocab.names[pad]]],
            )  # fmt: skip
            return torch.tensor([[vocab.index[p] for p in r.hypotheses[0]] for r in found])

        return decode

    def onnxruntime(src, beam):
        if beam > 1 or onnx is None:
            return None  # greedy only, on the CPU provider
        return torch.tensor(onnx.greedy(src.numpy(), n, min_len=n - 1))

    return {
        "formers": formers(ours), "formers-mkl": formers(mkl), "formers-int8": formers(int8),
        "transformers": transformers,
        "ct2": ct2("ct2"), "ct2-int8": ct2("ct2-int8"), "onnxruntime": onnxruntime,
    }  # fmt: skip


def timed(decode: Callable[..., Any], batches: list[torch.Tensor], beam: int) -> tuple[float, Any]:
    start = time.perf_counter()
    with torch.inference_mode():  # on the CPU before the clock stops (waits for a GPU)
        outs = [None if (o := decode(src, beam)) is None else o.cpu() for src in batches]
    elapsed = time.perf_counter() - start
    if any(o is None for o in outs):
        return float("nan"), None
    return elapsed, torch.cat(outs)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--size", choices=sorted(SIZES), default="base")
    p.add_argument("--vocab", type=int, default=8000)
    p.add_argument("--batch-size", type=int, default=32, help="sources of the batched mode")
    p.add_argument("--batch-one", type=int, default=8, help="sources decoded one at a time")
    p.add_argument("--src-len", type=int, default=20, help="tokens per source")
    p.add_argument("--new-tokens", type=int, default=31, help="N: N - 1 tokens, then EOS")
    p.add_argument("--beam-size", type=int, default=4)
    p.add_argument("--length-penalty", type=float, default=1.0, help="alpha in len ** alpha")
    p.add_argument("--rounds", type=int, default=3, help="timed runs of each runtime")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs of each runtime")
    p.add_argument("--threads", type=int, default=1, help="threads of every runtime")
    p.add_argument(
        "--device", choices=("cpu", "cuda"), default="cpu",
        help="cuda: formers, Hugging Face and CTranslate2 (if built with CUDA) on the GPU; the "
        "CPU-only int8 and ONNX Runtime rows are marked unsupported",
    )  # fmt: skip
    p.add_argument(
        "--runtimes",
        nargs="*",
        choices=RUNTIMES,
        default=list(RUNTIMES),
        help="runtimes of the matrix (none: the speculative rows only)",
    )
    data = ROOT.parent / "shared" / "data"
    p.add_argument("--lm-target", help="a trained decoder-only checkpoint")
    p.add_argument("--lm-draft", help="its draft (same tokenizer)")
    p.add_argument("--lm-text", default=str(data / "tinyshakespeare" / "input.txt"))
    p.add_argument("--lm-prompts", type=int, default=8)
    p.add_argument("--lm-prompt-chars", type=int, default=16)
    p.add_argument("--lm-new-tokens", type=int, default=48)
    p.add_argument(
        "--lm-blockwise-steps",
        type=int,
        default=0,
        help="train blockwise proposal heads this many steps (0: no blockwise rows)",
    )
    p.add_argument("--mt-target", help="a trained translation checkpoint")
    p.add_argument("--mt-draft", help="its draft (same tokenizer)")
    p.add_argument("--mt-heads", help="blockwise proposal heads for it (from formers heads)")
    p.add_argument(
        "--mt-sources",
        default=str(data / "multi30k" / "tok" / "test_2016_flickr.lc.norm.tok.en.gz"),
    )
    p.add_argument("--mt-sentences", type=int, default=32)
    p.add_argument("--k", type=int, nargs="+", default=[2, 3, 4], help="proposals per pass")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="JSON path")
    args = p.parse_args(argv)
    if args.new_tokens < 2:
        p.error("--new-tokens must be >= 2")
    if args.out is None:
        suffix = "" if args.size == "base" else f"_{args.size}"
        args.out = ROOT / "benchmarks" / "results" / f"runtimes_{args.device}{suffix}.json"
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: CUDA is not available")
    for package, names in NEEDS.items():
        asked = [name for name in args.runtimes if name in names]
        if asked and installed(package) is None:
            p.error(f"--runtimes {' '.join(asked)} needs {package}, which is not installed "
                    f"(pip install -e '.[{EXTRAS[package]}]'), or leave them out")  # fmt: skip
    return args


def installed(package: str) -> str | None:
    """``package``'s installed version, or ``None`` where it is not installed."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def run_mode(decode: dict[str, Callable[..., Any]], batches: list[torch.Tensor], beam: int,
             args: argparse.Namespace) -> dict[str, Any]:  # fmt: skip
    """Interleaved rounds of every runtime on ``batches``; speeds, ratios, identical outputs."""
    names = list(args.runtimes)
    sentences = sum(b.size(0) for b in batches)
    tokens = sentences * (args.new_tokens - 1)
    outputs: dict[str, Any] = {}
    for _ in range(args.warmup):
        for name in names:
            timed(decode[name], batches, beam)

    def once(name: str) -> float:
        elapsed, out = timed(decode[name], batches, beam)
        outputs.setdefault(name, out)
        return elapsed

    times = interleaved(names, once, args.rounds)
    rows = speed_rows(times, outputs, tokens)
    for name, row in rows.items():
        if not row.get("supported", True):
            continue
        row["ms_per_sentence"] = 1e3 * row["median_s"] / sentences
        if name in FP32 and name != "formers" and "formers" in outputs:
            row["identical_to_formers"] = torch.equal(outputs[name], outputs["formers"])
    for row in rows.values():
        for ref in ("transformers", "ct2", "ct2-int8"):
            if row.get("tokens_per_s") and rows.get(ref, {}).get("tokens_per_s"):
                row[f"speed_over_{ref}"] = row["tokens_per_s"] / rows[ref]["tokens_per_s"]
                row[f"best_speed_over_{ref}"] = (
                    row["best_tokens_per_s"] / rows[ref]["best_tokens_per_s"]
                )
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    t_start = time.perf_counter()
    torch.set_num_threads(args.threads)
    from formers.inference import gemm
    from formers.inference.layout import use_inference_layout
    from formers.models.transformer.convert import load_hf

    hf = marian_model(args)
    ours = load_hf(hf).eval()
    gen = torch.Generator().manual_seed(args.seed)
    # ids 1 .. vocab - 2: neither EOS (0) nor padding (vocab - 1)
    src = torch.randint(1, args.vocab - 1, (args.batch_size, args.src_len), generator=gen)
    src = src.to(args.device)
    load_before = load_average()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as work:
        if args.runtimes:
            decode = decoders(ours, hf, args, Path(work))
            use_inference_layout(ours)  # after the exports (which read the weights either way)
        for mode, beam in (("greedy", 1), ("beam", args.beam_size)) if args.runtimes else ():
            results[f"{mode}_batch{args.batch_size}"] = run_mode(decode, [src], beam, args)
            ones = [src[i : i + 1] for i in range(args.batch_one)]
            results[f"{mode}_batch1"] = run_mode(decode, ones, beam, args)
    speculative: dict[str, Any] = {}
    if args.lm_target and args.lm_draft:
        speculative["language_model"] = speculative_rows.language_model_rows(args)
    if args.mt_target and args.mt_draft:
        speculative["translation"] = speculative_rows.translation_rows(args)
    load_after = load_average()
    runtime = time.perf_counter() - t_start
    warnings = []
    if load_before and load_before[0] > args.threads + 0.5:
        warnings.append(f"load average {load_before[0]} before the run: other work shared the CPU")
    result = {
        **result_header("runtimes", argv, torch.device(args.device)),
        "versions": {
            "torch": torch.__version__,
            **{name: installed(name) for name in ("transformers", "ctranslate2", "onnxruntime")},
            "python": platform.python_version(),
        },  # fmt: skip
        "threads": args.threads,
        "gemm": {
            "formers": gemm.gemm_backend(ours),
            "cpu_vendor": gemm.cpu_vendor(),
            "numpy_blas": gemm.numpy_blas_name(),
        },  # fmt: skip
        "load_average_1_5_15_min": {"before": load_before, "after": load_after},
        "model": {
            "kind": "MarianMTModel (random seeded weights), imported with load_hf",
            "size": args.size,
            **SIZES[args.size],
            "vocab_size": args.vocab,
        },  # fmt: skip
        "data": {
            "batch_size": args.batch_size,
            "batch_one_sentences": args.batch_one,
            "src_len": args.src_len,
            "tokens_per_sentence": args.new_tokens - 1,
        },  # fmt: skip
        "decoding": {
            "beam_size": args.beam_size,
            "length_penalty": args.length_penalty,
            "early_stopping": True,
        },  # fmt: skip
        "schedule": {
            "warmup": args.warmup,
            "rounds": args.rounds,
            "order": "interleaved, alternating",
        },  # fmt: skip
        "results": results,
        "speculative": speculative,
        "warnings": warnings,
        "runtime_s": runtime,
    }
    write_result(args.out, result)
    print(f"Marian {args.size} on {result['device']['cpu']}, {args.threads} thread(s)")
    for mode, rows in results.items():
        print(f"  {mode}")
        for name, row in rows.items():
            if not row.get("supported", True):
                print(f"    {name:13s} (not supported)")
                continue
            same = row.get("identical_to_formers")
            print(
                f"    {name:13s} {row['tokens_per_s']:8.1f} tokens/s {row['ms_per_sentence']:8.1f}"
                f" ms/sentence (best round {row['best_tokens_per_s']:8.1f} tokens/s)"
                + ("" if same is None else f"  identical: {same}")
            )
    for task, block in speculative.items():
        tables = block["rows"] if "greedy" not in block["rows"] else {"": block["rows"]}
        for label, rows in tables.items():
            print(f"  speculative, {task} {label}")
            for name, row in rows.items():
                extra = {k: v for k, v in row.items() if k != "tokens_per_s"}
                print(f"    {name:16s} {row['tokens_per_s']:8.1f} tokens/s  {extra}")
    print_footer(warnings, runtime, args.out)
    return result


if __name__ == "__main__":
    main()
