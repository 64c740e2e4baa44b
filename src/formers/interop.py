"""Hugging Face models <-> formers models, whatever the family.

Each family has its own converter (``formers.models.<family>.convert``: the only place that
knows Hugging Face's tensor names); this module picks the right one, from the ``model_type`` of a
Hugging Face model, or from the config class of one of ours:

=================================  =====================  ===================================
Hugging Face ``model_type``        formers family         our model
=================================  =====================  ===================================
``bert``                           ``bert``               body, or body with MLM/classifier
``gpt2``, ``llama``                ``gpt``                :class:`DecoderOnlyLM`
``marian``                         ``transformer``        :class:`EncoderDecoder`
=================================  =====================  ===================================

Example::

    from formers.interop import from_hf, save_hf
    model = from_hf("path/to/bert-dir", num_labels=2)  # a new, untrained classifier head
    save_hf(model, "exported")                          # config.json + model.safetensors
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import ModuleType
from typing import Any

from torch import nn

from formers.models import registry
from formers.models.config_base import ConfigError
from formers.models.hf_common import ConversionError
from formers.models.registry import family_of_config

# every model_type a family's converter reads (formers.models.registry.FAMILIES)
SUPPORTED_MODEL_TYPES = tuple(
    sorted(t for family in registry.FAMILIES.values() for t in family.hf_model_types)
)


def _converter(family: str) -> ModuleType:
    return registry.get_family(family).converter


def model_type_of(source: str | os.PathLike | Any) -> str:
    """The ``model_type`` of a Hugging Face model directory (its ``config.json``) or object.

    Raises:
        ConversionError: no readable ``config.json``, or a config without ``model_type``.
    """
    if isinstance(source, str | os.PathLike):
        file = Path(source) / "config.json"
        if not Path(source).is_dir():
            raise ConversionError(f"{source} is not a directory (expected a Hugging Face model)")
        if not file.is_file():
            raise ConversionError(f"{source} has no config.json: it is not a Hugging Face model")
        try:
            model_type = json.loads(file.read_text(encoding="utf-8")).get("model_type")
        except (UnicodeDecodeError, json.JSONDecodeError, AttributeError) as error:
            raise ConversionError(f"{file} is not a JSON object: {error}") from None
    else:
        model_type = getattr(getattr(source, "config", None), "model_type", None)
    if not model_type:
        raise ConversionError(
            f"{source!s:.200} has no model_type in its config; cannot tell which converter reads it"
        )
    return str(model_type)


def family_of_model_type(model_type: str) -> str:
    """The formers family that converts ``model_type`` (see the module docstring).

    Raises:
        ConversionError: an unsupported ``model_type``; the message lists the supported ones.
    """
    family = registry.family_of_model_type(model_type)
    if family is None:
        raise ConversionError(
            f"model_type {model_type!r} is not supported; formers converts "
            f"{', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    return family.name


def from_hf(source: str | os.PathLike | Any, **heads: Any) -> nn.Module:
    """A formers model with the weights of a Hugging Face model, in eval mode.

    Args:
        source: a local Hugging Face model directory (``config.json`` and safetensors weights;
            pickled ``pytorch_model.bin`` is refused) or a ``transformers`` model object.
        **heads: BERT only: ``num_labels`` (a classification head, newly initialized unless
            the source has one) and ``mlm_head`` (the masked LM head).

    Returns:
        The family's model, with ``.config`` (see the module docstring).

    Raises:
        ConversionError: an unsupported ``model_type`` (the message lists the supported ones),
            head options for a family without heads, or weights that do not fit.
    """
    family = family_of_model_type(model_type_of(source))
    allowed = registry.get_family(family).hf_options
    unknown = sorted(set(heads) - set(allowed))
    if unknown:
        raise ConversionError(
            f"{unknown} cannot be set for a {family!r} model; "
            + (f"it takes {list(allowed)}" if allowed else "only BERT takes head options")
        )
    return _converter(family).load_hf(source, **heads)


def _family_of_model(model: nn.Module) -> str:
    config = getattr(model, "config", None)
    if config is None:
        raise ConversionError(
            f"the {type(model).__name__} has no .config; export a model made by a formers "
            "builder (build_gpt, build_bert, build_transformer) or loaded with load_model"
        )
    try:
        return family_of_config(config).name
    except ConfigError as error:
        raise ConversionError(str(error)) from None


def to_hf(model: nn.Module) -> Any:
    """The same model as a ``transformers`` model with the same weights.

    Raises:
        ConversionError: the model has no formers config, or a feature that its Hugging Face
            counterpart cannot express (the message names it).
    """
    return _converter(_family_of_model(model)).to_hf(model)


def save_hf(model: nn.Module, out_dir: str | os.PathLike) -> Path:
    """Write ``model`` as a Hugging Face model directory (``config.json``, ``model.safetensors``)
    that ``transformers`` and :func:`from_hf` read; returns the directory.

    Raises:
        ConversionError: as :func:`to_hf`.
    """
    _converter(_family_of_model(model)).save_hf(model, out_dir)
    return Path(out_dir)
