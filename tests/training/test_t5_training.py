"""T5 through the translation pipeline: [model] family = "t5" trains (and resumes exactly), its
checkpoint loads as T5, translates from the command line and draws its attention."""

import pytest

from formers.cli.main import main
from formers.training.checkpoint import list_checkpoints, load_model
from formers.training.config import experiment_from_dict
from formers.training.trainer import Trainer
from formers.viz import capture_attention
from training.trainer_helpers import experiment, log_records, make_corpus

T5_TINY = dict(family="t5", preset="t5_tiny", d_model=32, d_kv=8, d_ff=64, num_heads=4,
               num_layers=1, num_decoder_layers=2, dropout=0.1)  # fmt: skip


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory)


def t5_experiment(corpus, **train):
    values = experiment(corpus, valid=True, **train).to_dict()
    return experiment_from_dict({**values, "model": T5_TINY})


def losses(run):
    return {r["step"]: r["loss"] for r in log_records(run) if r["type"] == "train"}


def test_t5_trains_resumes_exactly_translates_and_draws(corpus, tmp_path, capsys):
    straight, split = tmp_path / "straight", tmp_path / "split"
    Trainer(t5_experiment(corpus), straight, progress=False).fit()
    Trainer(t5_experiment(corpus, max_steps=6), split, progress=False).fit()
    Trainer(t5_experiment(corpus), split, resume=True, progress=False).fit()
    a, b = losses(straight), losses(split)
    assert sorted(a) == sorted(b) == list(range(1, 13))
    assert all(abs(a[s] - b[s]) <= 1e-6 for s in range(7, 13))
    assert a[12] < a[1]
    checkpoint = list_checkpoints(straight)[-1]
    model, tokenizer, config = load_model(checkpoint)
    assert config["architecture"] == "t5" and type(model.config).__name__ == "T5Config"
    assert model.bos_id == tokenizer.bos_id  # trained with the tokenizer's ids
    source = tmp_path / "src.txt"
    source.write_text("the cat sat\na dog runs\n")
    argv = ["translate", "--checkpoint", str(checkpoint), "--input", str(source), "--beam", "2"]
    capsys.readouterr()  # the trainer's messages
    assert main([*argv, "--max-len-b", "5"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    record = capture_attention(model, tokenizer, "the cat sat", "a dog runs")
    assert set(record.views) == {"encoder", "decoder", "cross"}
    for view in record.views.values():
        assert abs(view.sum(-1) - 1).max() < 1e-4  # the softmax over the biased scores
