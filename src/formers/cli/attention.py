"""``formers attention``: draw a checkpoint's attention on one text, as a PNG or an HTML page.

The output's suffix chooses the picture:

========  ===================================================================================
suffix    picture
========  ===================================================================================
.png      one layer's heads as a grid of heatmaps (``--layer``, default the last); with
          ``--overview``, every layer by every head (needs matplotlib: ``formers[viz]``)
.html     one self-contained page (no network) with view, layer and head selectors, a lines
          view and a heatmap view
========  ===================================================================================

For an encoder-decoder the decoder reads ``--tgt`` (forced decoding) or, without it, the
beam-search translation of ``--src``. See :mod:`formers.viz` for the Python functions.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from formers.cli.textio import check_output
from formers.cli.threads import add_threads_option, set_threads
from formers.device import resolve_device

SUFFIXES = (".png", ".html")


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "attention", help="draw a model's attention on a text (heatmap .png or page .html)"
    )
    p.add_argument("--checkpoint", required=True, metavar="DIR", help="checkpoint directory")
    p.add_argument("--src", required=True, metavar="TEXT", help="the source (or only) text")
    p.add_argument(
        "--tgt", metavar="TEXT", help="encoder-decoder: the target to force (default: translate)"
    )
    p.add_argument("--out", required=True, metavar="FILE", help="output: FILE.png or FILE.html")
    p.add_argument(
        "--view",
        choices=("encoder", "decoder", "cross", "self"),
        help="png: which attention (default: cross for encoder-decoders, else self)",
    )
    p.add_argument("--layer", type=int, default=-1, metavar="N", help="png: layer (-1: last)")
    p.add_argument(
        "--overview", action="store_true", help="png: all layers x all heads instead of one layer"
    )
    p.add_argument(
        "--beam", type=int, metavar="K",
        help="beam size to translate (the checkpoint recipe's [decode], else 4)",
    )  # fmt: skip
    p.add_argument("--device", default="cpu", help="cpu (default), auto, cuda:N")
    add_threads_option(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    suffix = out.suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(
            f"--out {args.out}: unknown picture type {suffix or '(no suffix)'!r}; "
            "use a .png (heatmaps) or an .html (interactive page) file name"
        )
    if not args.src.strip():
        raise ValueError("--src is empty: give the text whose attention to draw")
    check_output(args.out, "--out")
    set_threads(args.threads)

    if suffix == ".png":  # before loading any weights: is matplotlib there?
        from formers.viz.heatmap import require_matplotlib

        try:
            require_matplotlib()
        except ImportError as error:
            raise ValueError(str(error)) from None

    from formers.cli.translate import decode_options  # torch-heavy imports: lazily
    from formers.training.checkpoint import load_model, require_tokenizer
    from formers.viz import capture_attention

    model, tokenizer, config = load_model(args.checkpoint, device=resolve_device(args.device))
    require_tokenizer(tokenizer, args.checkpoint, "drawing attention")
    # translating --src decodes as `formers translate` does (the recipe's [decode] options)
    decode = decode_options(args, config)
    options = {k: decode[k] for k in ("beam", "lenpen", "lenpen_form")}
    record = capture_attention(model, tokenizer, args.src, args.tgt, **options)
    if suffix == ".html":
        from formers.viz import save_html

        save_html(record, out)
    else:
        from formers.viz import plot_layer, plot_overview

        view = args.view or ("cross" if "cross" in record.views else "self")
        if view not in record.views:
            raise ValueError(
                f"--view {view}: this {record.family} model has {', '.join(record.views)} attention"
            )
        if args.overview:
            plot_overview(record, view, out)
        else:
            plot_layer(record, view, args.layer, out)
    print(f"wrote {out}")
    return 0
