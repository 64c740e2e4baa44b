"""The model families, each described once: its kind, config, builder, presets, converter and the
Hugging Face model types it reads.

A checkpoint records its family (``"architecture"`` in ``config.json``); everything else that
depends on the family (which training tasks train it, which command and which server route run
it, which converter reads a Hugging Face model) asks this table, and what depends only on the
*kind* of model (encoder-decoder, decoder-only, encoder-only) asks :data:`KINDS`. A new family
is one new row of :data:`FAMILIES`; one of an existing kind trains, decodes, serves and draws its
attention like the others of that kind.

=================  ================  ====================================  ================
family             kind              model                                 Hugging Face
=================  ================  ====================================  ================
``transformer``    encoder-decoder   the paper's Transformer               ``marian``
``t5``             encoder-decoder   T5 (relative bias, pre-RMS-norm)      ``t5``
``gpt``            decoder-only      GPT-2 / LLaMA-style language model    ``gpt2``, ``llama``
``transformer_xl`` decoder-only      Transformer-XL (segment memory)       none (removed in
                                                                         transformers 5)
``bert``           encoder-only      BERT (body, MLM or classifier head)   ``bert``
=================  ================  ====================================  ================

Families are imported on first use (a descriptor names its package; nothing heavy is imported
to read the table).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from formers.models.config_base import ConfigError


@dataclass(frozen=True)
class Kind:
    """What every family of one kind shares.

    Attributes:
        name: ``"encoder-decoder"``, ``"decoder-only"`` or ``"encoder-only"``.
        what: how messages name a model of this kind.
        command: the command that runs such a checkpoint on text.
    """

    name: str
    what: str
    command: str


KINDS = {
    kind.name: kind
    for kind in (
        Kind("encoder-decoder", "an encoder-decoder (translation) model", "formers translate"),
        Kind("decoder-only", "a decoder-only language model", "formers generate"),
        Kind("encoder-only", "a BERT-style encoder", "formers predict"),
    )
}


@dataclass(frozen=True)
class Family:
    """One model family.

    Attributes:
        name: the architecture name stored in checkpoints.
        kind: its :class:`Kind`'s name.
        package: the package with its config class, builder, ``PRESETS`` and ``convert``.
        config_name, builder_name: names of the config dataclass and of the builder there.
        derived: config fields set from the tokenizer or data, never by a recipe's [model].
        hf_model_types: the Hugging Face ``model_type`` values its converter reads.
        hf_options: keyword options of its converter's ``load_hf`` (e.g. heads to add).
    """

    name: str
    kind: str
    package: str
    config_name: str
    builder_name: str
    derived: tuple[str, ...]
    hf_model_types: tuple[str, ...] = ()
    hf_options: tuple[str, ...] = ()

    def _module(self) -> ModuleType:
        return importlib.import_module(self.package)

    @property
    def config_cls(self) -> type:
        """Its frozen config dataclass (``from_dict`` / ``to_dict``)."""
        return getattr(self._module(), self.config_name)

    @property
    def build(self) -> Any:
        """config -> model."""
        return getattr(self._module(), self.builder_name)

    @property
    def presets(self) -> dict[str, dict[str, Any]]:
        """Preset name -> dict of config values."""
        return self._module().PRESETS

    @property
    def converter(self) -> ModuleType:
        """Its Hugging Face converter module (``load_hf``, ``to_hf``, ``save_hf``).

        Raises:
            ConfigError: the family has no Hugging Face counterpart (``hf_model_types`` empty).
        """
        if not self.hf_model_types:
            raise ConfigError(
                f"the {self.name!r} family has no Hugging Face counterpart to convert from or "
                f"to; formers converts the families {', '.join(_converted())}"
            )
        return importlib.import_module(f"{self.package}.convert")

    @property
    def what(self) -> str:
        return KINDS[self.kind].what

    @property
    def command(self) -> str:
        return KINDS[self.kind].command

    def config(self, values: dict[str, Any]) -> Any:
        return self.config_cls.from_dict(values)


FAMILIES = {
    family.name: family
    for family in (
        Family(
            "transformer", "encoder-decoder", "formers.models.transformer",
            "TransformerConfig", "build_transformer",
            derived=("vocab_size", "tgt_vocab_size", "pad_id", "bos_id", "eos_id"),
            hf_model_types=("marian",),
        ),
        Family(
            "t5", "encoder-decoder", "formers.models.t5", "T5Config", "build_t5",
            derived=("vocab_size", "pad_id", "bos_id", "eos_id"), hf_model_types=("t5",),
        ),
        Family(
            "gpt", "decoder-only", "formers.models.gpt", "GPTConfig", "build_gpt",
            derived=("vocab_size", "pad_id", "bos_id", "eos_id"),
            hf_model_types=("gpt2", "llama"),
        ),
        Family(
            "transformer_xl", "decoder-only", "formers.models.transformer_xl",
            "TransformerXLConfig", "build_transformer_xl",
            derived=("vocab_size", "pad_id", "bos_id", "eos_id"),
        ),
        Family(
            "bert", "encoder-only", "formers.models.bert", "BertConfig", "build_bert",
            derived=("vocab_size", "pad_id", "cls_id", "sep_id", "mask_id", "unk_id",
                     "num_labels", "mlm_head"),
            hf_model_types=("bert",), hf_options=("num_labels", "mlm_head"),
        ),
    )
}  # fmt: skip
ARCHITECTURES = tuple(FAMILIES)


def _converted() -> list[str]:
    return [family.name for family in FAMILIES.values() if family.hf_model_types]


def get_family(name: str) -> Family:
    """The family called ``name`` (one of :data:`ARCHITECTURES`)."""
    if name not in FAMILIES:
        raise ConfigError(f"unknown model family {name!r}; choose one of {list(ARCHITECTURES)}")
    return FAMILIES[name]


def families_of_kind(kind: str) -> list[Family]:
    """The families of one kind, the default (the first) first."""
    if kind not in KINDS:
        raise ConfigError(f"unknown kind of model {kind!r}; choose one of {list(KINDS)}")
    return [family for family in FAMILIES.values() if family.kind == kind]


def family_of_config(config: Any) -> Family:
    """The family whose config class ``config`` is an instance of."""
    for family in FAMILIES.values():
        if type(config).__name__ == family.config_name and isinstance(config, family.config_cls):
            return family
    raise ConfigError(f"{type(config).__name__} is not the config of a formers model family")


def family_of_model_type(model_type: str) -> Family | None:
    """The family whose converter reads a Hugging Face ``model_type`` (``None``: none does)."""
    for family in FAMILIES.values():
        if model_type in family.hf_model_types:
            return family
    return None
