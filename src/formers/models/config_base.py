"""Helpers shared by the frozen-dataclass configs of every model family."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

C = TypeVar("C")


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


def require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def require_choice(name: str, value: str, choices) -> None:
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not supported; choose one of {sorted(choices)}")
