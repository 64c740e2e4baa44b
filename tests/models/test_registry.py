"""The family table: every family is complete, model types and kinds resolve, training tasks
bind to kinds (``[model] family`` picks one of the kind), and commands check the kind."""

from dataclasses import fields

import pytest

from formers.cli.families import require_architecture
from formers.interop import SUPPORTED_MODEL_TYPES, family_of_model_type
from formers.models import ConfigError
from formers.models.registry import (
    ARCHITECTURES,
    FAMILIES,
    KINDS,
    families_of_kind,
    family_of_config,
    get_family,
)
from formers.training.checkpoint import save_checkpoint
from formers.training.config import TASKS, experiment_from_dict


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_every_family_is_complete(name):
    family = get_family(name)
    assert family.kind in KINDS and family.command.startswith("formers ")
    assert family.presets and set(family.derived) <= {f.name for f in fields(family.config_cls)}
    if family.hf_model_types:
        for hook in ("load_hf", "to_hf", "save_hf"):
            assert callable(getattr(family.converter, hook))
    else:  # no Hugging Face counterpart: asking for a converter says so
        with pytest.raises(ConfigError, match=f"{name!r} family has no Hugging Face counterpart"):
            _ = family.converter
    preset = next(iter(family.presets))
    small = {"vocab_size": 50_300, "d_model": 32, "d_ff": 64, "num_heads": 2}  # ids of presets fit
    config = family.config({**family.presets[preset], **small})
    assert family_of_config(config) is family
    assert type(family.build(config)).__name__


def test_model_types_and_kinds_resolve_to_one_family_each():
    assert SUPPORTED_MODEL_TYPES == ("bert", "gpt2", "llama", "marian", "t5")
    assert {t: family_of_model_type(t) for t in SUPPORTED_MODEL_TYPES} == {
        "bert": "bert", "gpt2": "gpt", "llama": "gpt", "marian": "transformer", "t5": "t5",
    }  # fmt: skip
    assert [f.name for kind in KINDS for f in families_of_kind(kind)] == list(FAMILIES)
    with pytest.raises(ConfigError, match="unknown kind of model 'seq2seq'"):
        families_of_kind("seq2seq")


def test_tasks_bind_to_kinds_and_model_family_picks_one():
    assert {name: task.kind for name, task in TASKS.items()} == {
        "translate": "encoder-decoder", "lm": "decoder-only", "mlm": "encoder-only",
        "classify": "encoder-only",
    }  # fmt: skip
    table = {"task": "lm", "data": {"train": "x.txt"}, "train": {"max_steps": 1}}
    assert experiment_from_dict(table).family.name == "gpt"  # the kind's first
    chosen = experiment_from_dict({**table, "model": {"family": "gpt", "d_model": 64}})
    assert chosen.family.name == "gpt" and chosen.model_values()["d_model"] == 64
    xl = experiment_from_dict({**table, "model": {"family": "transformer_xl"}})
    assert xl.family.name == "transformer_xl"  # the lm task trains either decoder-only family
    with pytest.raises(
        ConfigError, match=r"task 'lm' trains decoder-only models.*\['gpt', 'transformer_xl'\]"
    ):
        experiment_from_dict({**table, "model": {"family": "bert"}})


def test_commands_check_the_kind_and_name_the_one_to_use(tmp_path):
    family = get_family("bert")
    config = family.config({**family.presets["bert_tiny"], "vocab_size": 30})
    model = family.build(config)
    save_checkpoint(tmp_path / "bert", model, config.to_dict())
    assert require_architecture(tmp_path / "bert", "encoder-only", "formers predict")
    with pytest.raises(ValueError, match="a BERT-style encoder.*needs a decoder-only language "
                                         "model; use formers predict for this one"):  # fmt: skip
        require_architecture(tmp_path / "bert", "decoder-only", "formers generate")
