"""The range of every decoding option, in one place.

``formers translate`` and ``formers generate``, the recipe's ``[decode]`` table, ``formers
serve`` (its requests and its limits) and the library's :func:`~formers.inference.translate`,
:func:`~formers.inference.generate_stream` and length penalties all check against
:data:`RANGES`, so that no search is handed a number it cannot honour: a length penalty of
``1e308`` overflows, a ``max_len_b`` of ``1e9`` would allocate a 32 GB token buffer, and a
``max_new_tokens`` of ``1e9`` runs for days. The ranges are wide enough for every published
setting; a value outside one is refused with a :class:`ValueError` that names the option, its
range and the value.

Output lengths have a second, tighter limit that depends on the model: a translation has at
most as many tokens as the model has target positions (``max_positions``: learned positions end
there, and the sinusoidal and rotary ones are built for that many), so ``max_len_b`` may not
exceed it (:func:`formers.inference.translate.output_limit`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Range:
    """``low <= value <= high`` (``low < value`` when ``open_low``), an int if ``integer``."""

    low: float
    high: float
    integer: bool
    open_low: bool = False

    def describe(self) -> str:
        left = "(" if self.open_low else "["
        kind = "an integer" if self.integer else "a number"
        return f"{kind} in {left}{_number(self.low)}, {_number(self.high)}]"


RANGES: dict[str, Range] = {
    # beam search (formers translate, POST /translate, [decode])
    "beam": Range(1, 128, integer=True),
    "nbest": Range(1, 128, integer=True),
    "lenpen": Range(0.0, 10.0, integer=False),
    "max_len_a": Range(0.0, 10.0, integer=False),
    "max_len_b": Range(0, 100_000, integer=True),
    "max_tokens": Range(1, 1_000_000, integer=True),
    # sampling (formers generate, POST /generate)
    "max_new_tokens": Range(1, 100_000, integer=True),
    "temperature": Range(0.0, 100.0, integer=False),
    "top_k": Range(0, 1_000_000, integer=True),
    "top_p": Range(0.0, 1.0, integer=False, open_low=True),
    "seed": Range(-(2**63), 2**64 - 1, integer=True),  # what torch's generators take
}


def check_option(
    name: str, value: object, *, high: int | None = None, why: str = "", label: str = ""
) -> None:
    """Refuse a value outside ``RANGES[name]`` (or above ``high``, a tighter limit of the model
    or the server, explained by ``why``, e.g. ``"the model's 64 positions"``). The message
    names the option ``label`` (default: ``name``).

    Raises:
        ValueError: the value is not a number of the right kind, not finite, or out of range.
    """
    r, name = RANGES[name], label or name
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or (r.integer and not isinstance(value, int)):
        raise ValueError(f"{name} must be {r.describe()}, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    too_low = value <= r.low if r.open_low else value < r.low
    if too_low or value > r.high:
        raise ValueError(f"{name} must be {r.describe()}, got {_number(value)}")
    if high is not None and value > high:
        limit = f" ({why})" if why else ""
        raise ValueError(f"{name} must be at most {high}{limit}, got {_number(value)}")


def option_label(name: str, cli: bool) -> str:
    """How a message names an option: ``max_len_b`` (Python, JSON, TOML), or ``--max-len-b``
    on the command line."""
    return f"--{name.replace('_', '-')}" if cli else name


def _number(value: float) -> str:
    """An int as digits with separators; a float as Python writes it."""
    return f"{value:,}" if isinstance(value, int) else repr(value)
