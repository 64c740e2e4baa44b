"""The model families by name: their config class, builder and presets.

A checkpoint records its family (``"architecture"`` in ``config.json``) and a training task
names the family it trains; both look it up here. Families are imported on first use.

========================  ===============================  ==============================
family                    model                            tasks
========================  ===============================  ==============================
``transformer``           encoder-decoder (the paper)      ``translate``
``gpt``                   decoder-only language model      ``lm``
``bert``                  encoder-only (BERT)              ``mlm``, ``classify``
========================  ===============================  ==============================
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from formers.models.config_base import ConfigError

ARCHITECTURES = ("transformer", "gpt", "bert")

# fields that come from the tokenizer or the data, never from a recipe's [model] table
_DERIVED = {
    "transformer": ("vocab_size", "tgt_vocab_size", "pad_id", "bos_id", "eos_id"),
    "gpt": ("vocab_size", "pad_id", "bos_id", "eos_id"),
    "bert": (
        "vocab_size",
        "pad_id",
        "cls_id",
        "sep_id",
        "mask_id",
        "unk_id",
        "num_labels",
        "mlm_head",
    ),
}
_CONFIGS = {"transformer": "TransformerConfig", "gpt": "GPTConfig", "bert": "BertConfig"}
_BUILDERS = {"transformer": "build_transformer", "gpt": "build_gpt", "bert": "build_bert"}


@dataclass(frozen=True)
class Family:
    """One model family.

    Attributes:
        name: the architecture name stored in checkpoints.
        config_cls: its frozen config dataclass (``from_dict`` / ``to_dict``).
        build: config -> model.
        presets: preset name -> dict of config values.
        derived: config fields set from the tokenizer or data, not by recipes.
    """

    name: str
    config_cls: type
    build: Callable[[Any], Any]
    presets: dict[str, dict[str, Any]]
    derived: tuple[str, ...]

    def config(self, values: dict[str, Any]) -> Any:
        return self.config_cls.from_dict(values)


def get_family(name: str) -> Family:
    """The family called ``name`` (one of :data:`ARCHITECTURES`)."""
    if name not in ARCHITECTURES:
        raise ConfigError(f"unknown model family {name!r}; choose one of {list(ARCHITECTURES)}")
    module = importlib.import_module(f"formers.models.{name}")
    return Family(
        name,
        getattr(module, _CONFIGS[name]),
        getattr(module, _BUILDERS[name]),
        module.PRESETS,
        _DERIVED[name],
    )


def family_of_config(config: Any) -> Family:
    """The family whose config class ``config`` is an instance of."""
    for name, cls_name in _CONFIGS.items():
        if type(config).__name__ == cls_name:
            family = get_family(name)
            if isinstance(config, family.config_cls):
                return family
    raise ConfigError(f"{type(config).__name__} is not the config of a formers model family")
