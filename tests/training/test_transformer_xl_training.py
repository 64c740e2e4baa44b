"""Transformer-XL through the lm task: stream batching (each row continues its own part of the
text, so that the memory carries context across steps), the memory in every checkpoint, exact
resume, validation with the memory, and the CLI (generate --memory, perplexity)."""

import json

import pytest
import torch
from safetensors.torch import load_file

from formers.cli.main import main
from formers.nn.recurrent_lm import RecurrentLM
from formers.training.checkpoint import load_model
from formers.training.config import experiment_from_dict
from formers.training.trainer import Trainer

N = 4
TINY_XL = dict(family="transformer_xl", preset="xl_char_cpu", d_model=32, num_layers=2,
               num_heads=2, d_ff=64, segment_length=8, memory_length=8, dropout=0.1,
               attention_dropout=0.1)  # fmt: skip


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    path = tmp_path_factory.mktemp("xl") / "text.txt"
    path.write_text("".join(f"to be or not to be, that is line {i % 9}.\n" for i in range(60)))
    return path


def experiment(text, model=None, **train):
    settings = dict(batch_size=3, lr=3e-3, warmup=2, max_steps=2 * N, validate_every=N,
                    log_every=1, device="cpu", threads=1, keep_last=10, clip_norm=1.0,
                    optimizer="adamw", label_smoothing=0.0, valid_batches=5)  # fmt: skip
    settings.update(train)
    return experiment_from_dict({
        "task": "lm", "data": {"train": str(text), "valid_fraction": 0.2},
        "tokenizer": {"kind": "char"}, "model": {**TINY_XL, **(model or {})}, "train": settings,
    })  # fmt: skip


def records(run_dir, kind):
    lines = (run_dir / "log.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["type"] == kind]


def test_rows_read_consecutive_segments_of_their_own_streams(text, tmp_path):
    task = Trainer(experiment(text), tmp_path / "run", progress=False).task
    batches = task.epoch_batches(0)
    assert [b[1] for b in batches] == list(range(len(batches)))  # in order, one a step
    first, second = task.collate(batches[0]), task.collate(batches[1])
    assert bool(first.tensors["first"]) and not bool(second.tensors["first"])
    # row r of step s + 1 starts where row r of step s ended
    assert torch.equal(second.tensors["x"][:, 0], first.tensors["y"][:, -1])
    # the rows are disjoint parts of the text, in its order
    x = first.tensors["x"]
    assert x.shape == (3, 8) and len({tuple(row.tolist()) for row in x}) == 3
    offset = batches[0][0]
    part = (len(task.train_ids) - 1 - offset) // 3
    for r in range(3):
        assert torch.equal(x[r], task.train_ids[offset + r * part : offset + r * part + 8])
    assert len(batches) == part // 8
    assert task.epoch_batches(1)[0][0] != offset or task.epoch_batches(2)[0][0] != offset


def test_resume_continues_exactly_with_the_memory(text, tmp_path):
    """2N steps straight == N, resume, N more (dropout on): the memory comes back too."""
    Trainer(experiment(text), tmp_path / "a", progress=False).fit()
    Trainer(experiment(text, max_steps=N), tmp_path / "b", progress=False).fit()
    saved = tmp_path / "b" / "checkpoints" / f"step_{N:08d}" / "task_state.safetensors"
    memory = load_file(saved)
    assert sorted(memory) == ["memory.0", "memory.1"] and memory["memory.0"].shape == (3, 8, 32)
    Trainer(experiment(text), tmp_path / "b", resume=True, progress=False).fit()
    a = {r["step"]: r["loss"] for r in records(tmp_path / "a", "train")}
    b = {r["step"]: r["loss"] for r in records(tmp_path / "b", "train")}
    assert sorted(a) == sorted(b) == list(range(1, 2 * N + 1))
    for step in range(N + 1, 2 * N + 1):
        assert abs(a[step] - b[step]) <= 1e-6, (step, a[step], b[step])
    last = f"step_{2 * N:08d}"
    for name in ("model.safetensors", "task_state.safetensors"):
        x = load_file(tmp_path / "a" / "checkpoints" / last / name)
        y = load_file(tmp_path / "b" / "checkpoints" / last / name)
        assert all(torch.equal(x[k], y[k]) for k in x), name


def test_resume_without_the_memory_would_differ(text, tmp_path):
    """The test above can fail: resuming from a checkpoint whose memory is dropped changes the
    next losses."""
    Trainer(experiment(text), tmp_path / "a", progress=False).fit()
    Trainer(experiment(text, max_steps=N), tmp_path / "b", progress=False).fit()
    (tmp_path / "b" / "checkpoints" / f"step_{N:08d}" / "task_state.safetensors").unlink()
    Trainer(experiment(text), tmp_path / "b", resume=True, progress=False).fit()
    a = {r["step"]: r["loss"] for r in records(tmp_path / "a", "train")}
    b = {r["step"]: r["loss"] for r in records(tmp_path / "b", "train")}
    assert abs(a[N + 1] - b[N + 1]) > 1e-6


def test_learns_validates_with_memory_and_runs_from_the_cli(text, tmp_path, capsys):
    run = tmp_path / "run"
    Trainer(experiment(text, max_steps=40, validate_every=20, model={"dropout": 0.0}), run,
            progress=False).fit()  # fmt: skip
    valid = records(run, "valid")
    assert valid[-1]["loss"] < valid[0]["loss"] < 3.0
    capsys.readouterr()
    best = run / "checkpoints" / "best"
    model, _, config = load_model(best)
    assert config["architecture"] == "transformer_xl" and isinstance(model, RecurrentLM)
    assert main(["generate", "--checkpoint", str(best), "--prompt", "to be", "--memory", "4",
                 "--max-new-tokens", "10", "--temperature", "0", "--no-stream"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert out.startswith("to be") and len(out) == len("to be") + 10 + 1  # 10 characters
    page = tmp_path / "attention.html"  # draws the attention it computes, relative terms in
    assert main(["attention", "--checkpoint", str(best), "--src", "to be", "--out", str(page)]) == 0
    assert page.stat().st_size > 1000 and "wrote" in capsys.readouterr().out
    from formers.serve.service import ModelService  # served as its kind is

    served = ModelService.load(best).generate("to be", max_new_tokens=6, temperature=0)
    assert served["tokens"] == 6 and served["text"].startswith("to be")
    argv = ["perplexity", "--checkpoint", str(best), "--text", str(text), "--json"]
    assert main([*argv, "--valid-fraction", "0.2", "--memory", "0", "8", "--segment", "8"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["memory"] for r in rows] == [0, 8] and rows[0]["tokens"] == rows[1]["tokens"]
    assert rows[1]["loss"] != rows[0]["loss"]
    assert main([*argv, "--memory", "-1"]) == 2
    assert "--memory must be >= 0" in capsys.readouterr().err


def test_refused_under_torchrun(text, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    from formers.training.tasks.language_model import LanguageModelTask

    with pytest.raises(ValueError, match="segment memory trains in one process"):
        LanguageModelTask(experiment(text), tmp_path, torch.device("cpu"), lambda r: None)
