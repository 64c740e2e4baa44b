"""Checkpoints: round trips, exact resumption, atomic writes, and the run directory's layout."""

import inspect
import json
import os

import pytest
import torch

from formers.training import averaging, checkpoint, checkpoint_io, optimizer_state, rng
from formers.training.checkpoint import (
    CheckpointError,
    list_checkpoints,
    load_model,
    load_training_state,
    prune_checkpoints,
    save_checkpoint,
)
from training.checkpoint_helpers import (
    adam_with_schedule,
    assert_same_tree,
    logits,
    tiny_config,
    tiny_model,
    tiny_tokenizer,
    train_step,
)


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


@pytest.mark.parametrize("tied", [True, False])
def test_round_trip_gives_identical_logits_and_keeps_tying(tmp_path, tokenizer, tied):
    overrides = {} if tied else {"share_embeddings": False, "tie_output": False}
    model = tiny_model(**overrides)
    path = save_checkpoint(tmp_path / "ckpt", model, model.config.to_dict(), tokenizer=tokenizer)
    assert sorted(os.listdir(path)) == ["config.json", "model.safetensors", "tokenizer.model"]

    loaded, loaded_tokenizer, config = load_model(path)
    assert torch.equal(logits(loaded), logits(model.eval()))
    assert not loaded.training
    assert (loaded.generator.weight is loaded.tgt_embed.token.weight) == tied
    assert (loaded.src_embed.token is loaded.tgt_embed.token) == tied
    assert loaded_tokenizer.fingerprint() == tokenizer.fingerprint()
    assert config["format"] == 1 and config["architecture"] == "transformer"
    assert config["model"] == tiny_config(**overrides).to_dict()


def test_load_model_leaves_the_callers_random_state_alone(tmp_path):
    path = save_checkpoint(tmp_path / "ckpt", tiny_model(), tiny_config().to_dict())
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    _, tokenizer, _ = load_model(path)
    assert tokenizer is None
    assert torch.equal(torch.rand(3), expected)


def test_a_full_config_keeps_its_other_sections(tmp_path):
    config = {"model": tiny_config().to_dict(), "train": {"lr": 0.005, "warmup": 2000}}
    path = save_checkpoint(tmp_path / "ckpt", tiny_model(), config)
    _, _, loaded = load_model(path)
    assert loaded["train"] == {"lr": 0.005, "warmup": 2000}
    assert loaded["model"] == config["model"]


def test_save_refuses_a_config_that_is_not_the_models(tmp_path):
    with pytest.raises(CheckpointError, match=r"is not the model's: d_ff \(64; the model has 32\)"):
        save_checkpoint(tmp_path / "ckpt", tiny_model(), tiny_config(d_ff=64).to_dict())
    assert not (tmp_path / "ckpt").exists()


def test_training_resumes_exactly_with_optimizer_schedule_and_rng(tmp_path):
    """Dropout and the batches draw from the global RNG: all of it must come back."""
    model = tiny_model(dropout=0.1)
    optimizer, scheduler = adam_with_schedule(model)
    straight = [train_step(model, optimizer, scheduler) for _ in range(6)]

    model = tiny_model(dropout=0.1)
    optimizer, scheduler = adam_with_schedule(model)
    first = [train_step(model, optimizer, scheduler) for _ in range(3)]
    state = {"step": 3, "scheduler": scheduler.state_dict()}
    path = save_checkpoint(
        tmp_path / "ckpt", model, model.config.to_dict(), optimizer=optimizer, state=state
    )
    saved_optimizer = optimizer.state_dict()

    resumed = tiny_model(seed=123, dropout=0.1)  # other weights, other RNG state
    optimizer, scheduler = adam_with_schedule(resumed)
    torch.rand(10)
    restored = load_training_state(path, resumed, optimizer)
    scheduler.load_state_dict(restored["scheduler"])
    assert restored["step"] == 3 and "rng" in restored
    assert_same_tree(optimizer.state_dict(), saved_optimizer)
    rest = [train_step(resumed, optimizer, scheduler) for _ in range(3)]
    assert first + rest == straight


def test_trainer_state_is_readable_json(tmp_path):
    state = {"step": 7, "best": None, "scheduler": {"last_epoch": 7}, "rng": {"seed": 1}}
    path = save_checkpoint(tmp_path / "c", tiny_model(), tiny_config().to_dict(), state=state)
    text = (path / "trainer_state.json").read_text()
    assert json.loads(text) == state
    assert text.splitlines()[1] == '  "step": 7,'  # one top-level key a line


@pytest.mark.parametrize("interrupt", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_a_crash_while_saving_leaves_the_previous_checkpoint(tmp_path, monkeypatch, interrupt):
    old = tiny_model(seed=1)
    path = save_checkpoint(tmp_path / "ckpt", old, old.config.to_dict())

    def crash(*args, **kwargs):  # after model.safetensors and config.json are written
        raise interrupt

    monkeypatch.setattr("formers.training.checkpoint.save_optimizer_state", crash)
    new = tiny_model(seed=2)
    optimizer, _ = adam_with_schedule(new)
    with pytest.raises(type(interrupt)):
        save_checkpoint(path, new, new.config.to_dict(), optimizer=optimizer)
    assert os.listdir(tmp_path) == ["ckpt"]  # no temporary directory left behind
    assert torch.equal(logits(load_model(path)[0]), logits(old.eval()))

    with pytest.raises(type(interrupt)):
        save_checkpoint(tmp_path / "fresh", new, new.config.to_dict(), optimizer=optimizer)
    assert os.listdir(tmp_path) == ["ckpt"]  # no partial directory under the final name


def test_a_failed_rename_puts_the_previous_checkpoint_back(tmp_path, monkeypatch):
    old = tiny_model(seed=1)
    path = save_checkpoint(tmp_path / "ckpt", old, old.config.to_dict())
    rename = os.rename

    def failing_rename(src, dst):
        if ".tmp-" in str(src):
            raise OSError("rename failed")
        rename(src, dst)

    monkeypatch.setattr(checkpoint_io.os, "rename", failing_rename)
    new = tiny_model(seed=2)
    with pytest.raises(OSError, match="rename failed"):
        save_checkpoint(path, new, new.config.to_dict())
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["ckpt"]
    assert torch.equal(logits(load_model(path)[0]), logits(old.eval()))


def test_saving_again_replaces_the_checkpoint(tmp_path):
    path = save_checkpoint(tmp_path / "best", tiny_model(seed=1), tiny_config().to_dict())
    new = tiny_model(seed=2)
    save_checkpoint(path, new, new.config.to_dict())
    assert os.listdir(tmp_path) == ["best"]
    assert torch.equal(logits(load_model(path)[0]), logits(new.eval()))


def test_save_refuses_to_replace_a_directory_with_other_files(tmp_path):
    (tmp_path / "notes.txt").write_text("precious")
    with pytest.raises(CheckpointError, match=r"not part of a checkpoint \(notes.txt\)"):
        save_checkpoint(tmp_path, tiny_model(), tiny_config().to_dict())
    assert (tmp_path / "notes.txt").read_text() == "precious"


def _make_run(tmp_path, steps):
    root = tmp_path / "run" / "checkpoints"
    for name in [f"step_{s:08d}" for s in steps] + ["best", ".step_00000005.tmp-0a1b"]:
        (root / name).mkdir(parents=True)
        (root / name / "config.json").write_text("{}")
    (root / "step_00000009.txt").write_text("not a checkpoint")
    return tmp_path / "run"


def test_list_checkpoints_sorts_by_step_and_skips_the_rest(tmp_path):
    run = _make_run(tmp_path, [10, 2, 100])
    assert [p.name for p in list_checkpoints(run)] == [
        "step_00000002",
        "step_00000010",
        "step_00000100",
    ]
    (tmp_path / "empty").mkdir()
    assert list_checkpoints(tmp_path / "empty") == []
    with pytest.raises(CheckpointError, match="no run directory at"):
        list_checkpoints(tmp_path / "missing")


def test_prune_keeps_the_last_n_and_best(tmp_path):
    run = _make_run(tmp_path, [10, 2, 100, 50])
    removed = prune_checkpoints(run, keep_last=2)
    assert [p.name for p in removed] == ["step_00000002", "step_00000010"]
    assert [p.name for p in list_checkpoints(run)] == ["step_00000050", "step_00000100"]
    prune_checkpoints(run, keep_last=0)
    assert list_checkpoints(run) == []
    assert (run / "checkpoints" / "best" / "config.json").exists()
    with pytest.raises(ValueError, match="keep_last must be >= 0"):
        prune_checkpoints(run, keep_last=-1)


def test_prune_spares_the_step_that_best_links_to(tmp_path):
    run = _make_run(tmp_path, [1, 2, 3])
    best = run / "checkpoints" / "best"
    best.rename(run / "checkpoints" / "old_best")
    best.symlink_to("step_00000001")
    prune_checkpoints(run, keep_last=1)
    assert [p.name for p in list_checkpoints(run)] == ["step_00000001", "step_00000003"]


@pytest.mark.parametrize("module", [averaging, checkpoint, checkpoint_io, optimizer_state, rng])
def test_loading_never_unpickles(module):
    source = inspect.getsource(module)
    assert "torch.load" not in source and "import pickle" not in source
