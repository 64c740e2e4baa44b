"""The decoding options' ranges: one table, honoured by every place that takes the options."""

import math

import pytest

from formers.decoding import length_penalty
from formers.decoding.options import RANGES, check_option
from formers.inference.generate import check_generate_options
from formers.inference.translate import check_translate_options
from formers.models import ConfigError
from formers.serve.limits import Limits
from formers.training.config import DecodeConfig

DECODE = ("beam", "lenpen", "max_len_a", "max_len_b", "max_tokens")  # [decode] and translate
SAMPLE = ("max_new_tokens", "temperature", "top_k", "top_p", "seed")  # generate


def edges(name):
    """``(values accepted, values refused)`` at the edges of an option's range."""
    r = RANGES[name]
    step = 1 if r.integer else 1e-9 * max(1.0, abs(r.high))
    inside = [r.high] + ([] if r.open_low else [r.low])
    outside = [r.high + step, r.low if r.open_low else r.low - step]
    return inside, outside


@pytest.mark.parametrize("name", sorted(RANGES))
def test_the_edges_of_every_range(name):
    inside, outside = edges(name)
    for value in inside:
        check_option(name, value)
    for value in [*outside, math.nan, math.inf, True, "1"]:
        with pytest.raises(ValueError, match=name):
            check_option(name, value)


def test_integers_are_required_where_a_count_is_meant():
    with pytest.raises(ValueError, match=r"beam must be an integer in \[1, 128\], got 2.0"):
        check_option("beam", 2.0)
    check_option("lenpen", 1)  # a number may be an int


def test_a_tighter_limit_is_named():
    with pytest.raises(ValueError, match=r"beam must be at most 8 \(the server's\), got 9"):
        check_option("beam", 9, high=8, why="the server's")


@pytest.mark.parametrize("name", DECODE)
def test_translate_and_the_recipe_share_the_ranges(name):
    base = dict(beam=4, lenpen=0.6, max_len_a=1.0, max_len_b=50, max_tokens=4096)
    inside, outside = edges(name)
    for value in inside:
        check_translate_options(nbest=1, **{**base, name: value})
        DecodeConfig(**{**base, name: value})
    for value in outside:
        with pytest.raises(ValueError, match=name):
            check_translate_options(nbest=1, **{**base, name: value})
        with pytest.raises(ConfigError, match=rf"\[decode\] {name}"):
            DecodeConfig(**{**base, name: value})


@pytest.mark.parametrize("name", SAMPLE)
def test_generation_shares_the_ranges(name):
    base = dict(max_new_tokens=10, temperature=1.0, top_k=0, top_p=1.0, seed=0)
    inside, outside = edges(name)
    for value in inside:
        check_generate_options(**{**base, name: value})
    for value in outside:
        with pytest.raises(ValueError, match=f"--{name.replace('_', '-')}"):
            check_generate_options(**{**base, name: value}, cli=True)


def test_the_length_penalties_and_the_servers_limits_are_bounded_too():
    with pytest.raises(ValueError, match="lenpen must be a number in"):
        length_penalty("gnmt", 1e308)  # ((5 + n) / 6) ** 1e308 overflows
    assert length_penalty("power", 10.0)(1000) == 1000.0**10
    with pytest.raises(ValueError, match="max_beam must be an integer in"):
        Limits(max_beam=RANGES["beam"].high + 1)
    with pytest.raises(ValueError, match="max_new_tokens must be an integer in"):
        Limits(max_new_tokens=RANGES["max_new_tokens"].high + 1)
