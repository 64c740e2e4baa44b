"""Text generation with a decoder-only language model: greedy decoding and sampling.

The prompt is read in one forward pass that fills the KV cache; after that each step feeds only
the newest token. Sampling uses temperature, top-k (Fan et al. 2018, arXiv 1805.04833) and
nucleus / top-p (Holtzman et al. 2019, arXiv 1904.09751); ``temperature=0`` is greedy.

Past the context: a model attends over at most ``context_length`` positions (GPT-2's learned
positions end there). Once prompt plus output fill the context, each further step recomputes the
logits from scratch over the last ``context_length`` tokens, as nanoGPT's ``generate`` does (the
window slides, so cached keys/values, whose positions are fixed, cannot be reused). This is
slower (one full pass per token) but lets generation run as long as asked.

Shapes: V vocabulary.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

from formers.decoding.options import check_option, option_label
from formers.decoding.sequential import filter_logits
from formers.inference.flat_step import fast_lm_decode
from formers.nn.decoder_only import DecoderOnlyLM
from formers.nn.modes import evaluating
from formers.nn.recurrent_lm import RecurrentLM


def check_generate_options(
    max_new_tokens: int,
    temperature: float,
    top_k: int,
    top_p: float,
    seed: int | None = None,
    *,
    cli: bool = False,
) -> None:
    """Raise :class:`ValueError` for a sampling option outside its range
    (:data:`formers.decoding.options.RANGES`); ``cli``: name it as a flag."""
    given = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p)
    if seed is not None:
        given["seed"] = seed
    for name, value in given.items():
        check_option(name, value, label=option_label(name, cli))


def check_memory_option(model: DecoderOnlyLM, memory: int | None) -> None:
    """Raise :class:`ValueError` for a memory length given to a model without segment memory."""
    if memory is not None and not isinstance(model, RecurrentLM):
        raise ValueError(
            f"a memory length is for models with segment memory (transformer_xl); a "
            f"{type(model).__name__} attends over its context of {model.context_length}"
        )


def _start(model: DecoderOnlyLM, prompt: list[int]) -> list[int]:
    tokens = [int(t) for t in prompt]
    if not tokens:
        if model.bos_id is None:
            raise ValueError(
                "the prompt is empty and the model has no bos_id to start from; "
                "pass at least one token"
            )
        tokens = [model.bos_id]
    if len(tokens) > model.context_length:
        raise ValueError(
            f"the prompt has {len(tokens)} tokens but the model's context_length is "
            f"{model.context_length}; shorten the prompt (e.g. keep its last "
            f"{model.context_length} tokens)"
        )
    bad = [t for t in tokens if not 0 <= t < model.vocab_size]
    if bad:
        raise ValueError(f"prompt ids {bad[:5]} are outside the vocabulary [0, {model.vocab_size})")
    return tokens


def generate_stream(
    model: DecoderOnlyLM,
    prompt: list[int],
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int | None = None,
    stop_at_eos: bool = True,
    memory: int | None = None,
) -> Iterator[int]:
    """Yield new token ids one at a time, as they are produced.

    Options are checked when this is called, not at the first ``next()``. The model's
    ``training`` flag is restored after every step, and autograd is off only inside a step.

    Args:
        model: a decoder-only language model.
        prompt: token ids to continue; if empty, generation starts from ``model.bos_id``.
        max_new_tokens: the most tokens to produce (>= 1).
        temperature: divides the logits; 0 picks the most probable token (greedy).
        top_k: sample among the ``top_k`` most probable tokens (0: all).
        top_p: sample from the smallest set of tokens whose probability reaches ``top_p``.
        seed: makes sampling reproducible (a private generator; the global RNG is untouched).
        stop_at_eos: stop after yielding ``model.eos_id`` (if the model has one).
        memory: for a model with segment memory (Transformer-XL), how many positions each
            layer remembers (default: the trained memory): the prompt is read a segment at a
            time, then each new token sees the last ``memory`` positions and itself.

    Returns:
        An iterator over the new token ids (the prompt is not repeated; EOS is included).

    Raises:
        ValueError: a bad option, an empty prompt without ``bos_id``, a prompt longer than
            ``model.context_length``, or ``memory`` for a model without segment memory.
    """
    check_generate_options(max_new_tokens, temperature, top_k, top_p, seed)
    tokens = _start(model, prompt)
    check_memory_option(model, memory)
    cache = model.new_cache() if memory is None else model.new_cache(memory)
    return _stream(
        model, tokens, cache, max_new_tokens, temperature, top_k, top_p, seed, stop_at_eos
    )


def _stream(
    model: DecoderOnlyLM,
    tokens: list[int],
    cache: Any,
    max_new_tokens: int,
    temperature: float,
    top_k: int,
    top_p: float,
    seed: int | None,
    stop_at_eos: bool,
) -> Iterator[int]:
    device = next(model.parameters()).device
    generator = None
    if seed is not None and temperature > 0:
        generator = torch.Generator(device=device)
        generator.manual_seed(seed)
    context = model.context_length

    def choose(logits: Tensor) -> int:  # (1, V) -> token id
        if temperature == 0:
            return int(logits.argmax(dim=-1))
        logits = filter_logits(logits.float() / temperature, top_k, top_p)
        probs = logits.softmax(dim=-1)
        return int(torch.multinomial(probs, 1, generator=generator))

    decode = fast_lm_decode(model)  # the flat step for one-token steps, where it can run
    with evaluating(model):  # the caller's mode is back before each yield
        ids = torch.tensor([tokens], dtype=torch.long, device=device)  # (1, t)
        logits = decode(ids, cache)[:, -1]  # the whole prompt in one pass: (1, V)
        token = choose(logits)
    for step in range(max_new_tokens):
        yield token
        if (stop_at_eos and token == model.eos_id) or step == max_new_tokens - 1:
            return
        tokens.append(token)
        with evaluating(model):
            if cache is not None and cache.length < context:
                new = torch.tensor([[token]], dtype=torch.long, device=device)  # (1, 1)
                logits = decode(new, cache)[:, -1]
            else:
                cache = None  # the window slides from here on: recompute over it every step
                window = torch.tensor([tokens[-context:]], dtype=torch.long, device=device)
                logits = model(window)[:, -1]
            token = choose(logits)


def generate(
    model: DecoderOnlyLM,
    prompt: list[int],
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int | None = None,
    stop_at_eos: bool = True,
    memory: int | None = None,
) -> list[int]:
    """The tokens of :func:`generate_stream` as a list (the same arguments and errors)."""
    return list(
        generate_stream(
            model,
            prompt,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            seed=seed,
            stop_at_eos=stop_at_eos,
            memory=memory,
        )
    )
