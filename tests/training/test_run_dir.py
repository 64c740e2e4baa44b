"""A run directory's policies: a rerun never clobbers a previous run, ``--overwrite`` starts
again, ``--resume`` repairs what a kill left, and a run that diverges stops without saving."""

import json
import math
import shutil

import pytest
import torch

from formers.cli.main import main
from formers.training.checkpoint import list_checkpoints
from formers.training.run_dir import RunDirectoryError, repair_run
from formers.training.trainer import DivergedError, Trainer
from training.trainer_helpers import experiment, log_records, make_corpus

STEPS = 12


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory)


def config(corpus, **train):
    values = dict(max_steps=STEPS, validate_every=3, best_metric="loss")
    return experiment(corpus, valid=True, **{**values, **train})


@pytest.fixture(scope="module")
def finished(corpus, tmp_path_factory):
    """A finished run: validations at 3, 6, 9 and 12, every step checkpoint kept."""
    run = tmp_path_factory.mktemp("finished") / "run"
    Trainer(config(corpus), run, progress=False).fit()
    return run


@pytest.fixture
def run(finished, tmp_path):
    """A copy of the finished run to damage."""
    return shutil.copytree(finished, tmp_path / "run", symlinks=True)


def trainer_state(checkpoint):
    return json.loads((checkpoint / "trainer_state.json").read_text())


def snapshot(run_dir):
    """Every file under ``run_dir`` with its bytes."""
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}


def test_the_finished_run_is_what_these_tests_assume(finished):
    best = trainer_state(finished / "checkpoints" / "best")
    assert best["step"] == best["best_step"] == STEPS  # the last validation was the best
    assert [int(p.name[5:]) for p in list_checkpoints(finished)] == [3, 6, 9, 12]


def test_a_rerun_without_resume_is_refused_before_anything_is_written(corpus, run, tmp_path):
    before = snapshot(run)
    with pytest.raises(RunDirectoryError, match="--resume.*--overwrite.*--run-dir"):
        Trainer(config(corpus), run, progress=False)
    assert snapshot(run) == before
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(
        f'[data]\ntrain_src = "{corpus["src"]}"\ntrain_tgt = "{corpus["tgt"]}"\n'
        f'[tokenizer]\npath = "{corpus["tok"]}"\n[train]\nmax_steps = 2\n'
    )
    assert main(["train", str(recipe), "--run-dir", str(run), "--no-progress"]) == 2
    assert snapshot(run) == before


def test_overwrite_starts_again(corpus, run):
    Trainer(config(corpus, max_steps=4), run, overwrite=True, progress=False).fit()
    steps = [r["step"] for r in log_records(run) if r["type"] == "train"]
    assert steps == [1, 2, 3, 4]  # the old run's records are gone, not appended to
    assert [int(p.name[5:]) for p in list_checkpoints(run)] == [3, 4]
    assert trainer_state(run / "checkpoints" / "best")["step"] <= 4


def test_resume_and_overwrite_exclude_each_other(corpus, run):
    with pytest.raises(RunDirectoryError, match="pick one"):
        Trainer(config(corpus), run, resume=True, overwrite=True, progress=False)


def test_resume_repairs_a_best_left_one_validation_behind(run):
    """A kill between writing step_12 and best: best is step 9's."""
    best = run / "checkpoints" / "best"
    shutil.rmtree(best)
    shutil.copytree(run / "checkpoints" / "step_00000009", best)
    done = repair_run(run, keep_last=10)
    assert any("rewrote" in line for line in done)
    assert trainer_state(best)["step"] == STEPS
    assert (best / "model.safetensors").read_bytes() == (
        run / "checkpoints" / "step_00000012" / "model.safetensors"
    ).read_bytes()
    assert repair_run(run, keep_last=10) == []  # nothing more to do


def test_resume_restores_a_best_caught_between_two_renames(run):
    """Replacing best renames it to .best.old-*, then the new one in; killed in between, the
    run has no best: the old one comes back, then the repair brings it up to date."""
    root = run / "checkpoints"
    (root / "best").rename(root / ".best.old-0123456789ab")
    shutil.copytree(root / "step_00000012", root / ".best.tmp-ba9876543210")
    done = repair_run(run, keep_last=10)
    assert any("restored" in line for line in done)
    assert sorted(p.name for p in root.iterdir() if p.name.startswith(".")) == []
    assert trainer_state(root / "best")["step"] == STEPS


def test_resume_deletes_hidden_temporaries_and_prunes(run):
    root = run / "checkpoints"
    shutil.copytree(root / "step_00000012", root / ".step_00000015.tmp-0123456789ab")
    (root / "step_00000003").rename(root / ".step_00000003.deleting-0123456789ab")
    repair_run(run, keep_last=2)
    assert sorted(p.name for p in root.iterdir()) == ["best", "step_00000009", "step_00000012"]


def test_resume_drops_log_records_of_steps_trained_again_and_a_torn_line(run):
    """Killed after logging steps 13-14 (and half of 15) past the last checkpoint (12)."""
    kept = log_records(run)
    with open(run / "log.jsonl", "a", encoding="utf-8") as f:
        for step in (13, 14):
            f.write(json.dumps({"type": "train", "step": step, "loss": 1.0}) + "\n")
        f.write('{"type": "train", "st')
    repair_run(run, keep_last=10)
    assert log_records(run) == kept


def test_checkpoints_without_best_step_are_repaired_from_the_log(run):
    """Checkpoints written before best_step was recorded: the logged validations say."""
    root = run / "checkpoints"
    for checkpoint in [*list_checkpoints(run), root / "best"]:
        state = trainer_state(checkpoint)
        del state["best_step"]
        (checkpoint / "trainer_state.json").write_text(json.dumps(state))
    shutil.rmtree(root / "best")
    shutil.copytree(root / "step_00000009", root / "best")
    repair_run(run, keep_last=10)
    assert trainer_state(root / "best")["step"] == STEPS


def test_a_run_whose_loss_stops_being_finite_stops_without_saving(corpus, tmp_path):
    run = tmp_path / "run"
    trainer = Trainer(config(corpus), run, progress=False)
    loss = trainer.task.loss

    def nan_from_step_8(model, batch):
        total, nll = loss(model, batch)
        return (total * math.nan, nll) if trainer.state["step"] >= 7 else (total, nll)

    trainer.task.loss = nan_from_step_8
    with pytest.raises(DivergedError, match="step 8: the gradient norm is nan.*step 6, is intact"):
        trainer.fit()
    assert [int(p.name[5:]) for p in list_checkpoints(run)] == [3, 6]
    assert "NaN" not in (run / "log.jsonl").read_text()
    assert max(r["step"] for r in log_records(run) if "step" in r) == 7
    saved = Trainer(config(corpus), run, resume=True, progress=False)
    assert all(torch.isfinite(p).all() for p in saved.model.parameters())
