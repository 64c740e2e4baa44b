"""The trainer end to end on a tiny generated corpus: exact resume, Ctrl-C, logs, checkpoints."""

import os
import signal

import pytest

from formers.cli.main import main
from formers.training.checkpoint import list_checkpoints, load_model
from formers.training.config import experiment_from_dict
from formers.training.trainer import Trainer
from training.trainer_helpers import N, experiment, log_records, make_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory)


def train_losses(run_dir):
    return {r["step"]: r["loss"] for r in log_records(run_dir) if r["type"] == "train"}


@pytest.mark.parametrize("update_freq", [1, 2])
def test_resume_continues_exactly(corpus, tmp_path, update_freq):
    """2N steps straight == N steps, then resume, then N more: same losses (dropout is on)."""
    straight = tmp_path / "straight"
    Trainer(experiment(corpus, update_freq=update_freq), straight, progress=False).fit()
    split = tmp_path / "split"
    Trainer(experiment(corpus, update_freq=update_freq, max_steps=N), split, progress=False).fit()
    cfg = experiment(corpus, update_freq=update_freq)
    Trainer(cfg, split, resume=True, progress=False).fit()
    a, b = train_losses(straight), train_losses(split)
    assert sorted(a) == sorted(b) == list(range(1, 2 * N + 1))
    for step in range(N + 1, 2 * N + 1):
        assert abs(a[step] - b[step]) <= 1e-6, (step, a[step], b[step])
    assert a[2 * N] < a[1]


def test_ctrl_c_saves_and_resumes_exactly(corpus, tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    Trainer(experiment(corpus), straight, progress=False).fit()

    interrupted = tmp_path / "interrupted"
    trainer = Trainer(experiment(corpus), interrupted, progress=False)
    original = trainer._train_step

    def step_then_ctrl_c(group):
        stats = original(group)
        if trainer.state["step"] == 3:  # the 4th step is under way when Ctrl-C arrives
            os.kill(os.getpid(), signal.SIGINT)
        return stats

    monkeypatch.setattr(trainer, "_train_step", step_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert list_checkpoints(interrupted)[-1].name == "step_00000004"  # finished step, then saved
    Trainer(experiment(corpus), interrupted, resume=True, progress=False).fit()
    a, b = train_losses(straight), train_losses(interrupted)
    for step in range(5, 2 * N + 1):
        assert abs(a[step] - b[step]) <= 1e-6


def test_validation_checkpoints_and_best(corpus, tmp_path):
    run = tmp_path / "run"
    cfg = experiment(corpus, valid=True, valid_bleu=True, keep_last=1, validate_every=4)
    state = Trainer(cfg, run, progress=False).fit()
    records = log_records(run)
    valid = [r for r in records if r["type"] == "valid"]
    assert [r["step"] for r in valid] == [4, 8, 12]
    assert all({"loss", "ppl", "bleu", "chrf", "bleu_signature"} <= set(r) for r in valid)
    assert state["best"] == max(r["bleu"] for r in valid)
    assert [p.name for p in list_checkpoints(run)] == ["step_00000012"]  # keep_last = 1
    model, tokenizer, _ = load_model(run / "checkpoints" / "best")
    assert tokenizer.vocab_size == model.vocab_size
    assert (run / "tokenizer.model").exists() and (run / "experiment.json").exists()


def valid_steps(run_dir):
    return [r["step"] for r in log_records(run_dir) if r["type"] == "valid"]


def test_the_final_weights_are_validated_once(corpus, tmp_path):
    """The last step (12) falls between checks (every 5): one more validation follows it, and
    resuming the finished run validates nothing again."""
    run = tmp_path / "run"
    cfg = experiment(corpus, valid=True, validate_every=5)
    Trainer(cfg, run, progress=False).fit()
    assert valid_steps(run) == [5, 10, 12]
    Trainer(cfg, run, resume=True, progress=False).fit()
    assert valid_steps(run) == [5, 10, 12]


def test_a_run_stopped_mid_epoch_validates_its_final_weights(corpus, tmp_path):
    """Validation at each epoch's end (validate_every 0), and at the final step mid-epoch."""
    run = tmp_path / "run"
    Trainer(experiment(corpus, valid=True, validate_every=0), run, progress=False).fit()
    steps = valid_steps(run)
    assert len(steps) == 2 and steps[0] < steps[1] == 2 * N  # an epoch ends between


def test_resume_without_checkpoint_is_an_error(corpus, tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        Trainer(experiment(corpus), tmp_path / "empty", resume=True, progress=False)


def test_train_cli_errors_are_one_line(corpus, tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text(f'[data]\ntrain_src = "{corpus["src"]}"\ntrain_tgt = "{corpus["tgt"]}"\n'
                      "[train]\nmax_step = 3\n")  # fmt: skip
    assert main(["train", str(config), "--run-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown TrainConfig key(s) ['max_step']" in err and "max_steps" in err
    assert len(err.splitlines()) == 1
    assert main(["train", str(tmp_path / "missing.toml")]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_early_stopping_by_patience(corpus, tmp_path):
    """With a learning rate too small to change anything, validation loss cannot improve by
    much; patience 1 on BLEU, which stays 0, stops after the second validation."""
    run = tmp_path / "run"
    cfg = experiment(corpus, valid=True, valid_bleu=True, patience=1, validate_every=2, lr=1e-9)
    state = Trainer(cfg, run, progress=False).fit()
    assert state["step"] == 4
    assert state["bad_validations"] == 1


def test_log_records_carry_the_time_and_training_seconds_across_resumes(corpus, tmp_path):
    import datetime

    run = tmp_path / "run"
    first = Trainer(experiment(corpus, max_steps=N), run, progress=False).fit()
    second = Trainer(experiment(corpus), run, resume=True, progress=False).fit()
    records = log_records(run)
    for r in records:
        assert datetime.datetime.fromisoformat(r["time"]).tzinfo is not None  # UTC, explicit
    logged = [r for r in records if r["type"] in ("train", "valid")]
    assert len(logged) >= 2 * N and all("seconds" in r for r in logged)
    seconds = [r["seconds"] for r in logged]
    assert seconds == sorted(seconds) and seconds[-1] > 0  # one clock, summed over the resume
    # the resumed run starts from the checkpoint's count (saved just before the first fit ended)
    resumed = min(r["seconds"] for r in logged if r["step"] > N)
    assert 0 < first["seconds"] <= resumed + 0.1
    assert second["seconds"] > first["seconds"]


def test_resume_restores_the_fp16_loss_scale(corpus, tmp_path, monkeypatch):
    """fp16 training's GradScaler state (scale, growth count) is checkpointed and restored, so a
    resumed run does not restart from the initial scale (and skip steps to find it again).

    fp16 autocast needs CUDA; here the trainer gets an enabled CPU scaler that doubles its scale
    every 2 steps, which exercises the same save and restore on fp32 gradients."""
    import torch

    real = torch.amp.GradScaler
    monkeypatch.setattr(
        torch.amp, "GradScaler",
        lambda device, enabled: real("cpu", init_scale=2.0**4, growth_interval=2),
    )  # fmt: skip
    straight = Trainer(experiment(corpus), tmp_path / "straight", progress=False)
    straight.fit()
    Trainer(experiment(corpus, max_steps=N), tmp_path / "split", progress=False).fit()
    resumed = Trainer(experiment(corpus), tmp_path / "split", resume=True, progress=False)
    assert resumed.scaler.get_scale() == 2.0 ** (4 + N // 2)  # not the initial 2**4
    resumed.fit()
    assert resumed.scaler.state_dict() == straight.scaler.state_dict()
    assert straight.scaler.get_scale() == 2.0 ** (4 + N)
    a, b = train_losses(tmp_path / "straight"), train_losses(tmp_path / "split")
    for step in range(N + 1, 2 * N + 1):
        assert abs(a[step] - b[step]) <= 1e-6, (step, a[step], b[step])


def test_translation_checkpoints_carry_the_recipes_decode_table(corpus, tmp_path):
    """formers translate decodes with it by default; averaging keeps it."""
    import dataclasses

    from formers.training.averaging import average_checkpoints
    from formers.training.checkpoint_io import read_config

    recipe = {"beam": 5, "lenpen": 1.0, "lenpen_form": "power"}
    cfg = experiment_from_dict({**experiment(corpus).to_dict(), "decode": recipe})
    run = tmp_path / "run"
    Trainer(cfg, run, progress=False).fit()
    checkpoints = list_checkpoints(run)
    decode = dataclasses.asdict(cfg.decode)
    assert decode["lenpen_form"] == "power"
    assert all(read_config(c)["decode"] == decode for c in checkpoints)
    average_checkpoints(checkpoints[-2:], tmp_path / "average")
    assert read_config(tmp_path / "average")["decode"] == decode
