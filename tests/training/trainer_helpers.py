"""A tiny translation corpus and experiment for the trainer's tests (test_trainer.py,
test_run_dir.py)."""

import json

from data.helpers import tiny_pairs, write_lines

from formers.data.tokenizer import Tokenizer
from formers.training.config import experiment_from_dict

N = 6  # steps before the interruption; an epoch is about 5 steps, so 2N crosses epochs


def make_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    pairs = tiny_pairs(200, seed=0)
    src = write_lines(root / "train.en.gz", [s for s, _ in pairs])
    tgt = write_lines(root / "train.de", [t for _, t in pairs])
    valid = tiny_pairs(20, seed=1)
    vsrc = write_lines(root / "valid.en", [s for s, _ in valid])
    vtgt = write_lines(root / "valid.de", [t for _, t in valid])
    # one tokenizer for every run, so that runs differ only in how they were trained
    tokenizer = Tokenizer.train([x for pair in pairs for x in pair], 60)
    tokenizer.save(root)
    return {"src": src, "tgt": tgt, "vsrc": vsrc, "vtgt": vtgt, "tok": root / "tokenizer.model"}


def experiment(corpus, *, valid=False, **train):
    data = {"train_src": str(corpus["src"]), "train_tgt": str(corpus["tgt"])}
    if valid:
        data.update(valid_src=str(corpus["vsrc"]), valid_tgt=str(corpus["vtgt"]))
    settings = dict(
        max_tokens=400, lr=3e-3, warmup=4, max_steps=2 * N, max_epochs=0, validate_every=N,
        valid_bleu=False, log_every=1, device="cpu", threads=1, keep_last=10, clip_norm=1.0,
    )  # fmt: skip
    settings.update(train)
    model = dict(preset="transformer_tiny", d_model=32, d_ff=64, num_heads=2, dropout=0.3,
                 attention_dropout=0.1, num_encoder_layers=1, num_decoder_layers=2)  # fmt: skip
    return experiment_from_dict(
        {"data": data, "tokenizer": {"path": str(corpus["tok"])}, "model": model, "train": settings}
    )


def log_records(run_dir):
    """The run's ``log.jsonl``, one dict per line."""
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
