"""Experiment configs: the shipped recipes validate; bad keys and values get clear errors."""

from pathlib import Path

import pytest

from formers.models import ConfigError
from formers.training.config import experiment_from_dict, load_experiment, parse_override

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.toml"))
DATA = {"train_src": "a.en", "train_tgt": "a.de"}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_recipes_validate(path):
    config = load_experiment(path)
    derived = {"vocab_size": 10000, "pad_id": 0}
    if config.task == "translate":
        derived.update(bos_id=1, eos_id=2)
    elif config.task in ("mlm", "classify"):
        classify = config.task == "classify"
        derived.update(cls_id=2, sep_id=3, mask_id=4, unk_id=1, num_labels=2 * classify,
                       mlm_head=not classify)  # fmt: skip
    model = config.family.config(config.model_values(**derived))
    assert model.vocab_size == 10000


def test_recipes_exist():
    assert {p.stem for p in CONFIGS} >= {
        "multi30k_en_de", "multi30k_en_de_cpu", "multi30k_en_de_cpu_raw", "wmt14_en_de_base",
        "shakespeare_char", "shakespeare_char_cpu", "sst2_bert_scratch", "sst2_minilm_finetune",
        "sst2_mlm",
    }  # fmt: skip


def test_shakespeare_recipes_are_nanogpts():
    gpu = load_experiment(Path(CONFIGS[0]).parent / "shakespeare_char.toml")
    model = gpu.family.config(gpu.model_values(vocab_size=65, pad_id=None, bos_id=None,
                                               eos_id=None))  # fmt: skip
    assert (model.num_layers, model.num_heads, model.d_model, model.context_length) == (
        6, 6, 384, 256,
    )  # fmt: skip
    assert model.dropout == 0.2 and not model.bias
    t = gpu.train
    assert (t.batch_size, t.max_steps, t.lr, t.min_lr, t.warmup) == (64, 5000, 1e-3, 1e-4, 100)
    assert (t.beta2, t.weight_decay, t.clip_norm, t.optimizer) == (0.99, 0.1, 1.0, "adamw")
    cpu = load_experiment(Path(CONFIGS[0]).parent / "shakespeare_char_cpu.toml")
    model = cpu.family.config(cpu.model_values(vocab_size=65, pad_id=None, bos_id=None,
                                               eos_id=None))  # fmt: skip
    assert (model.num_layers, model.num_heads, model.d_model, model.context_length) == (
        4, 4, 128, 64,
    )  # fmt: skip
    assert model.dropout == 0.0 and (cpu.train.batch_size, cpu.train.max_steps) == (12, 2000)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"task": "summarize"}, "task='summarize' is not supported"),
        ({"task": "lm", "data": {"train_src": "a"}}, "unknown TextDataConfig key"),
        ({"task": "lm", "model": {"preset": "bert_tiny"}}, "preset"),
        ({"task": "lm", "model": {"eos_id": 3}}, "come from the tokenizer or data"),
        ({"task": "classify", "model": {"num_labels": 3}}, "come from the tokenizer or data"),
        ({"task": "lm", "tokenizer": {"kind": "bytes"}}, "kind"),
        ({"task": "lm", "train": {"max_steps": 5, "optimizer": "sgd"}}, "optimizer"),
    ],
)
def test_task_config_errors(values, message):
    values = {"data": {"train": "t.txt"}, "train": {"max_steps": 5}, **values}
    with pytest.raises(ConfigError, match=message):
        experiment_from_dict(values)


def test_multi30k_recipe_is_the_published_setup():
    config = load_experiment(Path(CONFIGS[0]).parent / "multi30k_en_de.toml")
    model = config.model_config(vocab_size=10000, pad_id=0, bos_id=1, eos_id=2)
    assert (model.num_encoder_layers, model.num_decoder_layers) == (4, 4)
    assert (model.d_model, model.d_ff, model.num_heads) == (128, 256, 4)
    assert model.dropout == 0.3 and not model.norm_first and model.share_embeddings
    assert (config.train.lr, config.train.warmup, config.train.label_smoothing) == (
        0.005,
        2000,
        0.1,
    )
    assert config.train.keep_last == 10 and config.decode.beam == 5


def test_overrides_are_typed():
    assert parse_override("train.lr=1e-3") == (["train", "lr"], 0.001)
    assert parse_override("train.valid_bleu=false") == (["train", "valid_bleu"], False)
    assert parse_override("model.activation=swiglu") == (["model", "activation"], "swiglu")
    config = load_experiment(CONFIGS[0], ["train.lr=0.001", "model.d_model=64"])
    assert config.train.lr == 0.001 and config.model["d_model"] == 64


def test_unknown_keys_list_the_valid_ones():
    with pytest.raises(ConfigError, match="valid keys are: .*max_tokens"):
        experiment_from_dict({"data": DATA, "train": {"max_token": 10, "max_steps": 1}})
    with pytest.raises(ConfigError, match="valid keys are: .*d_model"):
        experiment_from_dict({"data": DATA, "model": {"dmodel": 3}})
    with pytest.raises(ConfigError, match="valid tables are"):
        experiment_from_dict({"data": DATA, "optim": {}})
    with pytest.raises(ConfigError, match="come from the tokenizer"):
        experiment_from_dict({"data": DATA, "model": {"vocab_size": 3}})


@pytest.mark.parametrize(
    "values, message",
    [
        ({"train": {"max_steps": 0, "max_epochs": 0}}, "max_epochs or max_steps"),
        ({"train": {"max_steps": 1, "schedule": "linear"}}, "schedule"),
        ({"train": {"max_steps": 1, "lr": "fast"}}, "lr must be float"),
        ({"train": {"max_steps": 1, "update_freq": 0}}, "update_freq"),
        ({"model": {"preset": "transformer_huge"}}, "preset"),
        ({"decode": {"beam": 0}}, "beam"),
        ({"tokenizer": {"vocab_size": 2}}, "vocab_size"),
    ],
)
def test_bad_values(values, message):
    values = {"train": {"max_steps": 10}, **values}
    with pytest.raises(ConfigError, match=message):
        experiment_from_dict({"data": DATA, **values})


def test_max_steps_alone_sets_no_epoch_limit():
    config = experiment_from_dict({"data": DATA, "train": {"max_steps": 5000}})
    assert (config.train.max_steps, config.train.max_epochs) == (5000, 0)


def test_missing_config_and_bad_toml(tmp_path):
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_experiment(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[data\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_experiment(bad)
    with pytest.raises(ConfigError, match="SECTION.KEY=VALUE"):
        parse_override("lr")
