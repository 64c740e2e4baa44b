"""Helpers shared by the frozen-dataclass configs of every model family."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, TypeVar

C = TypeVar("C")
Self = TypeVar("Self", bound="DictConfig")


class ConfigError(ValueError):
    """A configuration value or key is invalid; the message says what is expected."""


def config_from_dict(cls: type[C], values: dict[str, Any]) -> C:
    """Build a dataclass config from a dict, naming the valid keys when one is unknown."""
    valid = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(valid))
    if unknown:
        raise ConfigError(
            f"unknown {cls.__name__} key(s) {unknown}; valid keys are: {', '.join(valid)}"
        )
    return cls(**values)


_TYPE_CHECKS = {
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
}


def check_types(config: object) -> None:
    """Check every field against its annotation (``int``, ``float``, ``bool``, ``str``, or one
    of them ``| None``), so that e.g. the string ``"false"`` is never taken for a boolean; a
    float must be finite."""
    for f in dataclasses.fields(config):  # type: ignore[arg-type]
        value = getattr(config, f.name)
        type_name = str(f.type)
        optional = type_name.endswith(" | None")
        base = type_name.removesuffix(" | None")
        if (optional and value is None) or base not in _TYPE_CHECKS:
            continue
        if not _TYPE_CHECKS[base](value):
            expected = f"{base} or None" if optional else base
            raise ConfigError(
                f"{f.name} must be {expected}, got {value!r} ({type(value).__name__})"
            )
        # no config takes inf or nan: either would train (or decode) on NaN without a word
        if base == "float" and not math.isfinite(value):
            raise ConfigError(f"{f.name} must be a finite number, got {value!r}")


def require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def require_positive(config: object, names: tuple[str, ...]) -> None:
    """Each field of ``names`` is a positive int."""
    for name in names:
        value = getattr(config, name)
        positive = isinstance(value, int) and value > 0
        require(positive, f"{name} must be a positive int, got {value!r}")


def require_rates(config: object, names: tuple[str, ...]) -> None:
    """Each field of ``names`` (a dropout rate) is in ``[0, 1)``."""
    for name in names:
        value = getattr(config, name)
        require(0.0 <= value < 1.0, f"{name} must be in [0, 1), got {value!r}")


def require_ids_in_vocabulary(config: object, names: tuple[str, ...] = ("pad_id", "bos_id",
                              "eos_id")) -> None:  # fmt: skip
    """Each special id of ``names`` is ``None`` or inside ``[0, config.vocab_size)``."""
    size = config.vocab_size  # type: ignore[attr-defined]
    for name in names:
        value = getattr(config, name)
        require(
            value is None or 0 <= value < size,
            f"{name}={value} is outside the vocabulary [0, {size}); "
            "use an id the tokenizer has, or None",
        )


def require_choice(name: str, value: str, choices) -> None:
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not supported; choose one of {sorted(choices)}")


class DictConfig:
    """``from_dict`` / ``to_dict`` / ``replace`` for the frozen dataclass configs of the model
    families (unknown keys are refused with the valid ones listed; values are validated)."""

    @classmethod
    def from_dict(cls: type[Self], values: dict[str, Any]) -> Self:
        """Build from a dict; an unknown key raises an error listing the valid keys."""
        return config_from_dict(cls, values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    def replace(self: Self, **overrides: Any) -> Self:
        """A copy with some fields changed (validated, unknown keys rejected)."""
        return config_from_dict(type(self), {**self.to_dict(), **overrides})


def preset_values(presets: dict[str, dict[str, Any]], name: str, overrides: dict[str, Any]) -> dict:
    """A named preset's values with ``overrides`` on top; an unknown name lists the presets."""
    if name not in presets:
        raise ConfigError(f"unknown preset {name!r}; choose one of {sorted(presets)}")
    return {**presets[name], **overrides}
