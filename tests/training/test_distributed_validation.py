"""Validation shared by 2 torchrun ranks (each takes every other batch and sentence) gives every
rank the metrics of the whole set: those one process computes on the same weights, and those a
single-process run logs (2 ranks with update_freq 1 train as 1 process with update_freq 2).

A rank that reported its own shard (a missing all-reduce or gather) fails each of the checks:
on the final weights, both ranks validate together (``shared``: identical on both) and each
alone (``alone``: equal to ``shared`` up to summation order); and the validation records of
log.jsonl equal a one-process run's. Module-call counts show that each rank did about half of
the work.
"""

import json
import math
from pathlib import Path

import pytest
import torch

from formers.training.config import load_experiment
from formers.training.distributed import Distributed, interleave
from formers.training.trainer import Trainer
from training.test_distributed import make_corpus, records, torchrun, write_config
from training.test_distributed import pytestmark as pytestmark  # skipped without gloo

WORKER = Path(__file__).with_name("ddp_worker.py")
EXACT = ("bleu", "chrf", "bleu_signature", "accuracy", "tokens", "masked")
# summation order only (float64 sums of the same float32 terms, grouped by rank)
SUMMATION = 1e-12
# one process's run against two ranks' adds the training's rounding (same updates, another
# order of the gradient sums); a rank's own shard is off by ~1e-2 (translation: 0.75%)
RUNS = 1e-6


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def texts(tmp_path_factory):
    root = tmp_path_factory.mktemp("texts")
    g = torch.Generator().manual_seed(0)
    words = ["good", "bad", "film", "plot", "the", "a", "cast", "story", "fine", "poor"]
    rows = []
    for _ in range(162):  # the label: whether "good" or "fine" occurs
        sentence = [words[int(i)] for i in torch.randint(0, len(words), (5,), generator=g)]
        rows.append(f"{int('good' in sentence or 'fine' in sentence)}\t{' '.join(sentence)}")
    (root / "train.tsv").write_text("\n".join(rows[:128]) + "\n")
    (root / "dev.tsv").write_text("\n".join(rows[128:]) + "\n")  # 34 rows: 5 batches of 8
    (root / "text.txt").write_text("".join(f"to be or not, line {i % 7}.\n" for i in range(300)))
    from formers.data.hf_tokenizer import HFTokenizer

    HFTokenizer.train_wordpiece([r.split("\t")[1] for r in rows], 60).save(root)
    return root


def write_toml(path: Path, sections: dict) -> Path:
    lines = []
    for name, values in sections.items():
        if not isinstance(values, dict):
            lines.insert(0, f"{name} = {json.dumps(values)}")
            continue
        lines.append(f"[{name}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]  # JSON scalars are TOML
    path.write_text("\n".join(lines) + "\n")
    return path


def text_config(path: Path, texts: Path, task: str) -> Path:
    """A tiny lm, classify or mlm recipe without dropout (the ranks draw their own masks)."""
    train = dict(batch_size=8, lr=3e-3, warmup=2, max_steps=4, validate_every=2, log_every=1,
                 device="cpu", threads=1, keep_last=10, clip_norm=1.0, optimizer="adamw",
                 weight_decay=0.1, label_smoothing=0.1)  # fmt: skip
    if task == "lm":
        data, tokenizer = {"train": str(texts / "text.txt")}, {"kind": "char"}
        model = dict(preset="nanogpt_char_cpu", d_model=32, num_layers=2, num_heads=2, d_ff=64,
                     context_length=16, dropout=0.0, attention_dropout=0.0)  # fmt: skip
    else:
        data = {"train": str(texts / "train.tsv"), "valid": str(texts / "dev.tsv"), "max_len": 12}
        tokenizer = {"kind": "wordpiece", "path": str(texts)}
        model = dict(preset="bert_tiny", d_model=32, num_layers=2, num_heads=2, d_ff=64,
                     max_positions=32, dropout=0.0, attention_dropout=0.0)  # fmt: skip
    sections = {"task": task, "data": data, "tokenizer": tokenizer, "model": model, "train": train}
    return write_toml(path, sections)


def assert_close(a: dict, b: dict, rel: float) -> None:
    """The same metrics; counts, BLEU and chrF exactly, the losses within ``rel``."""
    assert a.keys() == b.keys(), (a, b)
    for key, value in a.items():
        if key in EXACT or not isinstance(value, float):
            assert value == b[key], (key, a, b)
        else:
            assert math.isclose(value, b[key], rel_tol=rel), (key, value, b[key])


def check(config: Path, tmp_path: Path) -> tuple[list[dict], list[dict]]:
    """Train with 2 ranks and with one process; compare their validations (see the module
    docstring); return both runs' validation records."""
    out = tmp_path / "out"
    torchrun(WORKER, config, tmp_path / "ddp", out, "--validate")
    ranks = [json.loads((out / f"rank_{r}.json").read_text()) for r in range(2)]
    assert ranks[0]["shared"] == ranks[1]["shared"]  # identical on every rank: they agree
    assert ranks[0]["alone"] == ranks[1]["alone"]  # (identical weights)
    assert_close(ranks[0]["shared"], ranks[0]["alone"], SUMMATION)
    for rank in ranks:  # each did about half the work (the module calls of its batches)
        assert 0 < rank["shared_calls"] <= 0.7 * rank["alone_calls"], rank

    trainer = Trainer(load_experiment(config, ["train.update_freq=2"]), tmp_path / "one",
                      progress=False)  # fmt: skip
    trainer.fit()
    assert_close(ranks[0]["shared"], trainer.task.validate(trainer.model), RUNS)
    ddp, one = (
        [r for r in records(tmp_path / run) if r["type"] == "valid"] for run in ("ddp", "one")
    )
    assert [r["step"] for r in ddp] == [r["step"] for r in one] == [2, 4]
    metrics = ranks[0]["shared"].keys()
    for a, b in zip(ddp, one, strict=True):
        assert_close({k: a[k] for k in metrics}, {k: b[k] for k in metrics}, RUNS)
    return ddp, one


def test_shards_interleave_back_into_the_list():
    for world_size in (1, 2, 3):
        for n in range(8):
            items = list(range(n))
            shares = [Distributed(r, world_size).shard(items) for r in range(world_size)]
            assert sorted(x for share in shares for x in share) == items
            assert interleave(shares) == items
    assert Distributed().unshard(["a", "b"]) == ["a", "b"]  # one process: its own list
    with pytest.raises(ValueError, match="do not split one list"):
        interleave([[0], [1, 3]])


def test_translation_validation_is_shared_and_equals_one_process(corpus, tmp_path):
    """loss, nll, ppl from all-reduced sums; BLEU and chrF on translations gathered in order."""
    config = write_config(tmp_path / "c.toml", corpus, dropout=0.0, max_steps=4,
                          validate_every=2, valid_bleu=True, valid_beam=2,
                          label_smoothing=0.1)  # fmt: skip
    ddp, _ = check(config, tmp_path)
    assert {"loss", "nll", "ppl", "bleu", "chrf", "bleu_signature"} <= ddp[0].keys()
    assert ddp[-1]["chrf"] > 0 and ddp[-1]["loss"] != ddp[-1]["nll"]


@pytest.mark.parametrize("task", ["lm", "classify", "mlm"])
def test_text_task_validation_is_shared_and_equals_one_process(texts, tmp_path, task):
    ddp, _ = check(text_config(tmp_path / "c.toml", texts, task), tmp_path)
    if task == "classify":
        assert 0 < ddp[-1]["accuracy"] < 1
