"""``formers demo``: train a small Transformer on a synthetic task, then show what it learned.

No download and no GPU: the task (copy, reverse or sort symbol sequences) is generated on the
fly. After training it decodes held-out sequences with beam search and prints the encoder-decoder
attention of one example as a text heatmap: for reversal, the anti-diagonal shows each output
position reading the mirrored input position.

With ``--save DIR`` the trained model is written as an ordinary checkpoint, with a
:class:`~formers.data.symbol_tokenizer.SymbolTokenizer` (text: symbols separated by spaces), so
that ``formers translate``, ``formers attention`` and ``formers serve`` read it like any other.
"""

from __future__ import annotations

import argparse
import shlex
import time
from pathlib import Path

import torch

from formers.cli.threads import add_threads_option, set_threads
from formers.data.symbol_tokenizer import SymbolTokenizer
from formers.data.synthetic import NUM_SPECIAL, TASKS, SyntheticTask
from formers.decoding import beam_search
from formers.models import TransformerConfig, build_transformer
from formers.training.synthetic import exact_match, train_synthetic

SHADES = " .:-=+*#%@"


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "demo", help="train a small model on a synthetic task (CPU, under a minute)"
    )
    p.add_argument("--task", choices=TASKS, default="reverse")
    p.add_argument("--steps", type=int, default=2500)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--length", type=int, default=10, help="maximum sequence length")
    p.add_argument("--seed", type=int, default=0)
    add_threads_option(p)
    p.add_argument(
        "--save", metavar="DIR", help="save the model as a checkpoint (translate, attention, serve)"
    )
    p.set_defaults(run=run)


def demo_config(task: SyntheticTask) -> TransformerConfig:
    """The demo's model: 2+2 layers, d_model 64, 4 heads, the task's vocabulary."""
    return TransformerConfig(
        vocab_size=task.vocab_size, d_model=64, d_ff=128, num_heads=4,
        num_encoder_layers=2, num_decoder_layers=2, dropout=0.0,
    )  # fmt: skip


def symbols(ids: list[int]) -> str:
    """The symbols of ``ids`` separated by spaces, specials dropped."""
    return " ".join(str(i - NUM_SPECIAL + 1) for i in ids if i >= NUM_SPECIAL)


def heatmap(weights: torch.Tensor, rows: list[str], cols: list[str]) -> str:
    """A ``(t, s)`` attention matrix as text, darker for more attention."""
    width = max(len(c) for c in cols) + 1
    lines = [" " * 5 + "".join(c.rjust(width) for c in cols)]
    for label, row in zip(rows, weights.tolist(), strict=True):
        cells = [SHADES[min(int(w * len(SHADES)), len(SHADES) - 1)] * 2 for w in row]
        lines.append(label.rjust(5) + "".join(c.rjust(width) for c in cells))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.steps < 1 or args.batch_size < 1 or args.length < 2:
        raise ValueError("--steps and --batch-size must be >= 1 and --length >= 2")
    set_threads(args.threads)
    save = Path(args.save) if args.save else None
    if save is not None:  # before training, not after
        from formers.training.checkpoint_io import check_target

        if not save.parent.is_dir():
            raise FileNotFoundError(f"--save {args.save}: the folder {save.parent} does not exist")
        check_target(save)  # absent, or a checkpoint (an earlier demo's) that it replaces
    task = SyntheticTask(args.task, min_len=max(2, args.length // 2), max_len=args.length)
    torch.manual_seed(args.seed)
    model = build_transformer(demo_config(task))
    print(f"task: {args.task} sequences of {task.min_len}-{task.max_len} symbols 1..10")
    print(f"model: {model.num_parameters():,} parameters, 2+2 layers, d_model 64, 4 heads")
    start = time.perf_counter()
    losses = train_synthetic(
        model, task, steps=args.steps, batch_size=args.batch_size, peak_lr=3e-3, warmup=100,
        seed=args.seed, progress=True,
    )  # fmt: skip
    elapsed = time.perf_counter() - start
    accuracy = exact_match(model, task, n=200, seed=args.seed + 1)
    print(f"trained {args.steps} steps in {elapsed:.0f}s; final loss {losses[-1]:.3f}")
    print(f"held-out exact match (greedy): {accuracy:.1%}\n")

    batch = task.sample(5, torch.Generator().manual_seed(args.seed + 2))
    out = beam_search(model, batch.src, beam_size=4, max_len_a=1.0, max_len_b=1)
    for src, hyp, gold in zip(batch.src, out.tokens, batch.tgt_out, strict=True):
        mark = "ok" if torch.equal(hyp[hyp != 0], gold[gold != 0]) else "WRONG"
        print(f"  {symbols(src.tolist()):<30} -> {symbols(hyp.tolist()):<30} [{mark}]")

    n = int((batch.src[0] != 0).sum())
    src, tgt = batch.src[:1, :n], batch.tgt_in[:1, : n + 1]  # BOS + n symbols
    with torch.no_grad():
        _, maps = model.forward_with_attention(src, tgt)
    cross = maps.cross[-1][0].mean(dim=0)  # (t, s): last layer, mean over heads
    print("\nencoder-decoder attention, last layer, mean over heads")
    print("(a row per output symbol it predicts, a column per input symbol)")
    rows = symbols(batch.tgt_out[0, :n].tolist()).split() + ["</s>"]
    print(heatmap(cross, rows, symbols(src[0].tolist()).split()))
    if save is not None:
        save_demo(model, task, save, example=symbols(src[0].tolist()))
    return 0


def save_demo(model: torch.nn.Module, task: SyntheticTask, directory: Path, example: str) -> None:
    """Save ``model`` as a checkpoint with its :class:`SymbolTokenizer`; print what to run next."""
    from formers.training.checkpoint import save_checkpoint  # the trainer's imports: lazily

    tokenizer = SymbolTokenizer(task.num_symbols)
    learned = dict(
        task=task.kind, num_symbols=task.num_symbols, min_len=task.min_len, max_len=task.max_len
    )
    config = {"model": demo_config(task).to_dict(), "demo": learned}
    save_checkpoint(directory, model, config, tokenizer=tokenizer)
    where, text = shlex.quote(str(directory)), shlex.quote(example)
    lengths = f"{task.min_len}-{task.max_len}"
    print(f"\nsaved the model to {directory} (it learned sequences of {lengths} symbols); try:")
    print(f"  echo {text} | formers translate --checkpoint {where}")
    print(f"  formers attention --checkpoint {where} --src {text} --out attention.html")
    print(f"  formers attention --checkpoint {where} --src {text} --out attention.png")
    print(f"  formers serve --checkpoint {where}")
