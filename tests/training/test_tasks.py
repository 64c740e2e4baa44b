"""The lm, classify and mlm tasks through the same trainer: exact resume, learning, checkpoints
that load back as the right family, and clear data errors."""

import json

import pytest
import torch

from formers.training.checkpoint import load_model
from formers.training.config import experiment_from_dict
from formers.training.schedules import cosine
from formers.training.trainer import Trainer

N = 5


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("text")
    positive, negative = ["good", "great", "fine"], ["bad", "awful", "poor"]
    neutral = ["film", "plot", "the", "a", "cast", "story"]
    g = torch.Generator().manual_seed(0)
    rows = []
    for _ in range(160):  # one sentiment word among neutral ones decides the label
        label = int(torch.randint(0, 2, (1,), generator=g))
        words = [neutral[int(i)] for i in torch.randint(0, len(neutral), (4,), generator=g)]
        cue = (positive if label else negative)[int(torch.randint(0, 3, (1,), generator=g))]
        words.insert(int(torch.randint(0, 5, (1,), generator=g)), cue)
        rows.append(f"{label}\t{' '.join(words)}")
    (root / "train.tsv").write_text("label\tsentence\n" + "\n".join(rows[:128]) + "\n")
    (root / "dev.tsv").write_text("\n".join(rows[128:]) + "\n")
    text = "".join(f"to be or not to be, line {i % 7}.\n" for i in range(300))
    (root / "text.txt").write_text(text)
    # one tokenizer for every run, trained once
    from formers.data.hf_tokenizer import HFTokenizer

    (root / "tok").mkdir()
    HFTokenizer.train_wordpiece([r.split("\t")[1] for r in rows], 60).save(root / "tok")
    return root


TINY_GPT = dict(preset="nanogpt_char_cpu", d_model=32, num_layers=2, num_heads=2, d_ff=64,
                context_length=16, dropout=0.1, attention_dropout=0.1)  # fmt: skip
TINY_BERT = dict(preset="bert_tiny", d_model=32, num_layers=2, num_heads=2, d_ff=64,
                 max_positions=32, dropout=0.1, attention_dropout=0.1)  # fmt: skip


def experiment(files, task, **train):
    settings = dict(batch_size=8, lr=3e-3, warmup=2, max_steps=2 * N, validate_every=N,
                    log_every=1, device="cpu", threads=1, keep_last=10, clip_norm=1.0,
                    optimizer="adamw", weight_decay=0.1, label_smoothing=0.0)  # fmt: skip
    settings.update(train)
    if task == "lm":
        data, tokenizer, model = {"train": str(files / "text.txt")}, {"kind": "char"}, TINY_GPT
    else:
        data = {"train": str(files / "train.tsv"), "valid": str(files / "dev.tsv"), "max_len": 12}
        tokenizer, model = {"kind": "wordpiece", "path": str(files / "tok")}, TINY_BERT
    return experiment_from_dict({"task": task, "data": data, "tokenizer": tokenizer,
                                 "model": model, "train": settings})  # fmt: skip


def records(run_dir, kind):
    lines = (run_dir / "log.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["type"] == kind]


@pytest.mark.parametrize("task", ["lm", "classify", "mlm"])
def test_resume_continues_exactly(files, tmp_path, task):
    """2N steps straight == N, resume, N more (dropout on; mlm masks drawn per batch)."""
    Trainer(experiment(files, task), tmp_path / "a", progress=False).fit()
    Trainer(experiment(files, task, max_steps=N), tmp_path / "b", progress=False).fit()
    Trainer(experiment(files, task), tmp_path / "b", resume=True, progress=False).fit()
    a = {r["step"]: r["loss"] for r in records(tmp_path / "a", "train")}
    b = {r["step"]: r["loss"] for r in records(tmp_path / "b", "train")}
    assert sorted(a) == sorted(b) == list(range(1, 2 * N + 1))
    for step in range(N + 1, 2 * N + 1):
        assert abs(a[step] - b[step]) <= 1e-6, (step, a[step], b[step])


def test_lm_learns_and_checkpoint_loads_as_gpt(files, tmp_path):
    run = tmp_path / "lm"
    Trainer(experiment(files, "lm", max_steps=60, validate_every=30), run, progress=False).fit()
    valid = records(run, "valid")
    assert valid[-1]["loss"] < valid[0]["loss"] < 3.0  # ln(vocab ~ 25) = 3.2 at the start
    model, tokenizer, config = load_model(run / "checkpoints" / "best")
    assert config["architecture"] == "gpt" and type(model).__name__ == "DecoderOnlyLM"
    assert tokenizer.vocab_size == model.vocab_size
    assert (run / "chars.json").exists()


def test_classifier_learns_and_loads_back(files, tmp_path):
    run = tmp_path / "cls"
    cfg = experiment(files, "classify", max_steps=80, validate_every=40, lr=2e-3)
    state = Trainer(cfg, run, progress=False).fit()
    assert state["best"] >= 0.9  # accuracy on 32 held-out rows of an easy rule
    model, tokenizer, config = load_model(run / "checkpoints" / "best")
    assert config["architecture"] == "bert" and config["model"]["num_labels"] == 2
    ids = torch.tensor([tokenizer.encode("good great film")])
    assert model(ids).shape == (1, 2)


def test_lm_without_batch_size_and_bad_labels(files, tmp_path):
    with pytest.raises(ValueError, match="batch_size must be set"):
        Trainer(experiment(files, "lm", batch_size=0), tmp_path / "x", progress=False)
    bad = tmp_path / "bad.tsv"
    bad.write_text("1\tfine\nyes\tgood\n")
    cfg = experiment(files, "classify")
    cfg = experiment_from_dict({**cfg.to_dict(), "data": {"train": str(bad)}})
    with pytest.raises(ValueError, match="line 2: the label 'yes' is not an integer"):
        Trainer(cfg, tmp_path / "y", progress=False)


def test_cosine_schedule_matches_nanogpt():
    """nanoGPT's get_lr after warmup: min + 0.5 (1 + cos(pi r)) (max - min)."""
    import math

    f = cosine(1e-3, 100, 2000, 1e-4)
    assert f(50) == pytest.approx(1e-3 * 50 / 100)
    assert f(100) == pytest.approx(1e-3)
    r = (1050 - 100) / (2000 - 100)
    assert f(1050) == pytest.approx(1e-4 + 0.5 * (1 + math.cos(math.pi * r)) * 9e-4)
    assert f(2000) == f(5000) == pytest.approx(1e-4)


def test_adamw_decays_matrices_only(files, tmp_path):
    trainer = Trainer(experiment(files, "lm"), tmp_path / "w", progress=False)
    decay, no_decay = trainer.optimizer.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"])
    assert all(p.dim() < 2 for p in no_decay["params"]) and no_decay["params"]


def test_mlm_validation_perplexity_is_of_the_plain_cross_entropy(files, tmp_path):
    """With label smoothing the reported loss is the smoothed objective (as translation's); the
    perplexity is exp of the plain cross-entropy of the masked tokens, recomputed here."""
    import math

    import torch.nn.functional as F

    trainer = Trainer(experiment(files, "mlm", label_smoothing=0.3), tmp_path / "m", progress=False)
    metrics = trainer.task.validate(trainer.model)
    task, nll, count = trainer.task, 0.0, 0
    with torch.no_grad():
        for i in range(0, len(task.valid_ids), task._batch_size()):
            batch = task._masked(task.valid_ids[i : i + task._batch_size()],
                                 task.seeded_generator(-1, i))  # fmt: skip
            if batch.count:
                logits = trainer.model.eval()(batch.tensors["ids"]).float()
                labels = batch.tensors["labels"]
                nll += float(F.cross_entropy(logits.flatten(0, 1), labels.flatten(),
                                             ignore_index=-100, reduction="sum"))  # fmt: skip
                count += batch.count
    assert metrics["masked"] == count > 0
    assert metrics["nll"] == pytest.approx(nll / count, rel=1e-5)
    assert metrics["ppl"] == pytest.approx(math.exp(nll / count), rel=1e-5)
    assert metrics["loss"] > metrics["nll"]  # the smoothed objective is larger here
