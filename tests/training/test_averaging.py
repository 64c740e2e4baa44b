"""Checkpoint averaging, as a function and as ``formers average``."""

import json
import re

import pytest
import torch

from formers.cli.main import main
from formers.training.checkpoint import (
    CheckpointError,
    average_checkpoints,
    load_model,
    save_checkpoint,
)
from training.checkpoint_helpers import tiny_model, tiny_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


def _save(path, seed, tokenizer=None, **overrides):
    model = tiny_model(seed=seed, **overrides)
    save_checkpoint(path, model, model.config.to_dict(), tokenizer=tokenizer)
    return model


def test_average_of_three_is_the_mean_of_the_weights(tmp_path, tokenizer):
    models = [_save(tmp_path / f"c{i}", seed=i, tokenizer=tokenizer) for i in range(3)]
    out = average_checkpoints([tmp_path / f"c{i}" for i in range(3)], tmp_path / "avg")
    averaged, averaged_tokenizer, config = load_model(out)
    for name, tensor in averaged.state_dict().items():
        mean = sum(m.state_dict()[name].double() for m in models) / 3
        assert torch.equal(tensor, mean.float()), name
    assert averaged.generator.weight is averaged.tgt_embed.token.weight
    assert averaged_tokenizer.fingerprint() == tokenizer.fingerprint()
    assert config["averaged_from"] == [str(tmp_path / f"c{i}") for i in range(3)]
    assert config["model"] == models[0].config.to_dict()


def test_averaging_copies_of_one_checkpoint_gives_it_back(tmp_path):
    model = _save(tmp_path / "c", seed=4)
    average_checkpoints([tmp_path / "c"] * 3, tmp_path / "avg")
    averaged = load_model(tmp_path / "avg")[0]
    for name, tensor in model.state_dict().items():
        assert torch.equal(averaged.state_dict()[name], tensor), name


def test_different_models_are_refused_naming_the_keys(tmp_path):
    _save(tmp_path / "a", seed=0)
    _save(tmp_path / "b", seed=0, d_ff=64, dropout=0.1)
    with pytest.raises(
        CheckpointError, match=r"differ in d_ff \(32 vs 64\), dropout \(0.0 vs 0.1\)"
    ):
        average_checkpoints([tmp_path / "a", tmp_path / "b"], tmp_path / "avg")
    assert not (tmp_path / "avg").exists()


def test_different_tokenizers_are_refused(tmp_path, tokenizer):
    _save(tmp_path / "a", seed=0, tokenizer=tokenizer)
    _save(tmp_path / "b", seed=1)
    with pytest.raises(
        CheckpointError, match=r"different tokenizers: .*a \(tokenizer .*no tokenizer"
    ):
        average_checkpoints([tmp_path / "a", tmp_path / "b"], tmp_path / "avg")


def test_nothing_to_average(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoints to average"):
        average_checkpoints([], tmp_path / "avg")


def _run_with_steps(tmp_path, steps):
    run = tmp_path / "run"
    for step in steps:
        _save(run / "checkpoints" / f"step_{step:08d}", seed=step)
    _save(run / "checkpoints" / "best", seed=99)
    return run


def test_cli_averages_named_checkpoints(tmp_path, capsys):
    for i in range(2):
        _save(tmp_path / f"c{i}", seed=i)
    args = ["average", "--checkpoints", str(tmp_path / "c0"), str(tmp_path / "c1")]
    assert main([*args, "--out", str(tmp_path / "avg")]) == 0
    assert "averaged 2 checkpoint(s) into" in capsys.readouterr().out
    load_model(tmp_path / "avg")


def test_cli_averages_the_last_n_of_a_run(tmp_path):
    run = _run_with_steps(tmp_path, [300, 100, 200])
    assert main(["average", "--run", str(run), "--last", "2", "--out", str(tmp_path / "avg")]) == 0
    config = json.loads((tmp_path / "avg" / "config.json").read_text())
    names = [p.rsplit("/", 1)[-1] for p in config["averaged_from"]]
    assert names == ["step_00000200", "step_00000300"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--run", "RUN"], "--run needs --last N"),
        (["--run", "RUN", "--last", "5"], "--last 5: .* has only 3 step checkpoint"),
        (["--checkpoints", "RUN/checkpoints/best", "--last", "2"], "--last goes with --run"),
        (["--checkpoints", "RUN/nowhere"], "no checkpoint directory at .*nowhere"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, capsys, args, message):
    run = _run_with_steps(tmp_path, [1, 2, 3])
    args = [a.replace("RUN", str(run)) for a in args]
    assert main(["average", *args, "--out", str(tmp_path / "avg")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("formers average: error: ")
    assert re.search(message, err), err
