"""[train] tensorboard = true: the log's records as TensorBoard scalars (read back with
TensorBoard's own reader), the folder treated as part of the run, and a clear error without the
package, before anything is written."""

import json
import sys

import pytest

from formers.training.config import experiment_from_dict
from formers.training.run_dir import RunDirectoryError
from formers.training.trainer import Trainer

pytest.importorskip("tensorboard")


def _experiment(tmp_path, **train):
    text = tmp_path / "text.txt"
    if not text.exists():
        text.write_text("".join(f"to be or not to be, line {i % 7}.\n" for i in range(80)))
    settings = dict(batch_size=4, lr=1e-3, warmup=1, max_steps=4, log_every=1, validate_every=2,
                    threads=1, device="cpu", tensorboard=True)  # fmt: skip
    return experiment_from_dict({
        "task": "lm", "data": {"train": str(text), "valid_fraction": 0.2},
        "tokenizer": {"kind": "char"},
        "model": dict(preset="nanogpt_char_cpu", d_model=16, num_layers=1, num_heads=2, d_ff=32,
                      context_length=8),
        "train": {**settings, **train},
    })  # fmt: skip


def _scalars(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    tags = events.Tags()["scalars"]
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in tags}


def test_scalars_are_the_logged_values(tmp_path):
    run = tmp_path / "run"
    Trainer(_experiment(tmp_path), run, progress=False).fit()
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    scalars = _scalars(run / "tensorboard")
    train = [r for r in records if r["type"] == "train"]
    valid = [r for r in records if r["type"] == "valid"]
    for name in ("loss", "lr", "grad_norm", "tokens_per_s"):
        assert [s for s, _ in scalars[f"train/{name}"]] == [r["step"] for r in train]
        for (_, value), record in zip(scalars[f"train/{name}"], train, strict=True):
            assert value == pytest.approx(record[name], rel=1e-6)  # stored as float32
    assert [s for s, _ in scalars["valid/loss"]] == [2, 4]
    assert [v for _, v in scalars["valid/ppl"]] == pytest.approx([r["ppl"] for r in valid])
    assert "valid/step" not in scalars and "valid/best" not in scalars


def test_the_folder_belongs_to_the_run(tmp_path):
    run = tmp_path / "run"
    Trainer(_experiment(tmp_path, max_steps=1), run, progress=False).fit()
    (run / "log.jsonl").unlink()  # only the event files are left of the previous run
    with pytest.raises(RunDirectoryError, match="tensorboard/"):
        Trainer(_experiment(tmp_path, max_steps=1), run, progress=False)
    Trainer(_experiment(tmp_path, max_steps=1), run, overwrite=True, progress=False).fit()
    assert len(list((run / "tensorboard").iterdir())) == 1  # the old events were deleted


def test_missing_package_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ValueError, match=r"needs the tensorboard package: pip install"):
        Trainer(_experiment(tmp_path), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
