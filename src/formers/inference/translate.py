"""Translate sentences with a trained model: tokenize, batch by length, search, detokenize.

Sources are sorted by length and cut into batches of at most ``max_tokens`` padded source tokens
(fairseq's ``--max-tokens``), so that short sentences are not padded to the longest one of the
whole input; the results are returned in the input order. Each batch is decoded with
:func:`formers.decoding.beam_search` (the paper: beam 4, length penalty 0.6, at most
``source length + 50`` tokens; Vaswani et al. 2017, arXiv 1706.03762, section 6.1), or with
:func:`formers.decoding.greedy_search` when ``beam == 1``, which finds the same output faster.

An empty source (no tokens) is not given to the model, whose attention would have nothing to
attend to: it translates to the empty string with score 0.

Shapes: b sentences in a batch, s longest source in the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from formers.decoding import (
    LENGTH_PENALTIES,
    beam_search,
    greedy_search,
    length_penalty,
    max_lengths,
)
from formers.decoding.base import pad_ids
from formers.decoding.blockwise_seq2seq import blockwise_greedy
from formers.decoding.options import check_option, option_label
from formers.decoding.speculative import speculative_greedy
from formers.inference.flat_step import fast_decodable
from formers.nn.modes import evaluating
from formers.nn.positional import LearnedPositionalEmbedding


class TextTokenizer(Protocol):
    """What translation needs of a tokenizer (:class:`formers.data.tokenizer.Tokenizer` has it)."""

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...


@dataclass(frozen=True)
class Translation:
    """One translation of one source sentence.

    Attributes:
        text: the detokenized translation.
        score: the search's ranking score: the log-probability of ``tokens`` followed by EOS,
            divided by the length penalty: GNMT's ``((5 + n) / 6) ** lenpen`` or, with
            ``lenpen_form="power"``, ``n ** lenpen``, ``n`` counting the EOS (the same for
            greedy and beam search, so that scores are comparable).
        tokens: the generated token ids, without the final EOS.
        truncated: the output reached its length limit (``max_len_a * source length +
            max_len_b``, or the model's positions), where the search puts an EOS whatever the
            model says: the translation may be cut short (or end there by chance).
    """

    text: str
    score: float
    tokens: list[int]
    truncated: bool = False


def check_translate_options(
    *,
    beam: int,
    nbest: int,
    max_tokens: int,
    max_len_a: float,
    max_len_b: int,
    lenpen: float = 0.6,
    lenpen_form: str = "gnmt",
    max_sentences: int = 512,
    cli: bool = False,
) -> None:
    """Raise :class:`ValueError` for options no search can honour (see :func:`translate`; the
    ranges are :data:`formers.decoding.options.RANGES`); ``cli``: name them as flags."""
    given = dict(beam=beam, nbest=nbest, max_tokens=max_tokens, lenpen=lenpen,
                 max_len_a=max_len_a, max_len_b=max_len_b)  # fmt: skip
    for name, value in given.items():
        check_option(name, value, label=option_label(name, cli))
    if nbest > beam:
        raise ValueError(
            f"{option_label('nbest', cli)} must be between 1 and the beam size ({beam}), "
            f"got {nbest}"
        )
    if max_len_a == 0 and max_len_b < 1:
        raise ValueError(
            f"{option_label('max_len_b', cli)} must be >= 1 when max_len_a is 0, got {max_len_b}"
        )
    if isinstance(max_sentences, bool) or not isinstance(max_sentences, int) or max_sentences < 1:
        raise ValueError(f"max_sentences must be >= 1, got {max_sentences}")
    check_lenpen_form(lenpen_form)


def check_lenpen_form(lenpen_form: str) -> None:
    """Raise :class:`ValueError` unless ``lenpen_form`` names a length penalty."""
    if lenpen_form not in LENGTH_PENALTIES:
        raise ValueError(
            f"lenpen_form must be one of {', '.join(LENGTH_PENALTIES)}, got {lenpen_form!r}"
        )


def length_batches(
    lengths: Sequence[int], max_tokens: int, max_sentences: int = 512
) -> Iterator[list[int]]:
    """Indices of ``lengths`` sorted by length and cut into batches.

    A batch holds at most ``max_sentences`` sentences and ``b * s <= max_tokens`` padded tokens.
    Sorting is stable, so the batches depend only on the lengths.

    Raises:
        ValueError: a sentence is longer than ``max_tokens`` on its own.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batch: list[int] = []
    for i in order:
        if lengths[i] > max_tokens:
            raise ValueError(
                f"sentence {i} (0-based) has {lengths[i]} tokens, more than max_tokens "
                f"({max_tokens}); raise max_tokens or shorten the sentence"
            )
        # ascending order: the newcomer is the longest, so it sets the padded width
        if batch and ((len(batch) + 1) * lengths[i] > max_tokens or len(batch) >= max_sentences):
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


def position_limit(embed: nn.Module) -> int | None:
    """How many positions an embedding can encode (``None``: unlimited)."""
    positions = getattr(embed, "positions", None)
    return positions.max_len if isinstance(positions, LearnedPositionalEmbedding) else None


def output_limit(model: nn.Module) -> int | None:
    """The most tokens a translation may have: the model's target positions (learned ones end
    there; sinusoidal and rotary ones were built for ``max_positions``); ``None``: no limit."""
    learned = position_limit(model.tgt_embed)
    if learned is not None:
        return learned
    built_for = getattr(getattr(model, "config", None), "max_positions", None)
    return built_for if isinstance(built_for, int) else None


def _model_device(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _to_translation(
    model: nn.Module, tokenizer: TextTokenizer, tokens: Tensor, score: float, limit: int
) -> Translation:
    """A hypothesis (``tokens`` ending with EOS) of a source whose outputs have at most
    ``limit`` tokens, EOS included."""
    ids = [t for t in tokens.tolist() if t not in (model.eos_id, model.pad_id)]
    return Translation(tokenizer.decode(ids), float(score), ids, truncated=len(ids) + 1 >= limit)


def translate(
    model: nn.Module,
    tokenizer: TextTokenizer,
    sentences: Sequence[str],
    *,
    beam: int = 4,
    lenpen: float = 0.6,
    lenpen_form: str = "gnmt",
    nbest: int = 1,
    max_tokens: int = 4096,
    max_len_a: float = 1.0,
    max_len_b: int = 50,
    device: str | torch.device | None = None,
    progress: bool = False,
    max_sentences: int = 512,
    draft: nn.Module | None = None,
    draft_k: int = 4,
    heads: nn.Module | None = None,
) -> list[list[Translation]]:
    """Translate ``sentences``; return the ``nbest`` best translations of each, in input order.

    Args:
        model: an :class:`~formers.nn.EncoderDecoder` (any model with its step interface and
            ``src_embed``/``tgt_embed``). It is put in eval mode for the call and its previous
            mode is restored afterwards.
        tokenizer: encodes sources (``encode(text) -> ids`` without BOS/EOS) and decodes outputs
            (``decode(ids) -> text``).
        sentences: source sentences.
        beam: beam size; 1 decodes greedily.
        lenpen: the length penalty's ``alpha`` (the paper: 0.6, GNMT's form).
        lenpen_form: ``"gnmt"``: ``((5 + n) / 6) ** alpha`` (GNMT, as the paper);
            ``"power"``: ``n ** alpha`` (fairseq's ``--lenpen``, Hugging Face's
            ``length_penalty``).
        nbest: translations to return per sentence, best first (``<= beam``).
        max_tokens: at most this many padded source tokens per batch.
        max_len_a, max_len_b: an output has at most ``floor(a * source_len + b)`` tokens,
            EOS included, and no more than the model's positions (:func:`output_limit`).
        device: where to run; the model is moved there. ``None``: where the model already is.
        progress: show a progress bar (sentences translated) on stderr.
        max_sentences: at most this many sentences per batch.
        draft: a smaller encoder-decoder with the same vocabulary: greedy search (``beam=1``)
            then checks ``draft_k`` of its tokens per pass of ``model`` (speculative decoding,
            :mod:`formers.decoding.speculative`; the same output, faster when it agrees).
        heads: blockwise-decoding proposal heads for ``model``
            (:class:`~formers.decoding.blockwise.BlockwiseHeads`): greedy search then checks
            up to ``heads.k`` tokens per pass (:mod:`formers.decoding.blockwise_seq2seq`; the
            same output).

    Returns:
        For each sentence, a list of ``nbest`` :class:`Translation` objects, best first (one
        for an empty source).

    Raises:
        ValueError: an impossible option (see :func:`check_translate_options`); a source
            longer than ``max_tokens`` or than the model's learned positions; a token id outside
            the model's vocabulary. Sentences are named by 1-based position ("sentence 3 of 10"),
            i.e. by input line.
    """
    check_translate_options(
        beam=beam, nbest=nbest, max_tokens=max_tokens, max_len_a=max_len_a,
        max_len_b=max_len_b, lenpen=lenpen, lenpen_form=lenpen_form, max_sentences=max_sentences,
    )  # fmt: skip
    if isinstance(sentences, str):
        raise TypeError("sentences must be a list of strings, not one string")
    for name, given in (("a draft model", draft), ("blockwise heads", heads)):
        if given is not None and beam != 1:
            raise ValueError(f"{name} decodes greedily (beam 1), not with a beam of {beam}")
    if draft is not None and heads is not None:
        raise ValueError("give a draft model or blockwise heads, not both")
    if not sentences:
        return []
    sources = [list(tokenizer.encode(text)) for text in sentences]
    _check_sources(model, sources, max_tokens)
    if device is not None:
        model.to(device)
    run_device = _model_device(model)
    limits: dict[str, Any] = dict(max_len_a=max_len_a, max_len_b=max_len_b)
    limits["max_len"] = output_limit(model)  # the target positions cap outputs
    if draft is not None:
        theirs = output_limit(draft)
        if theirs is not None and (limits["max_len"] is None or theirs < limits["max_len"]):
            raise ValueError(
                f"the draft has {theirs} target positions, fewer than the model's "
                f"{limits['max_len']}: it could not propose tokens as far as the model decodes"
            )
    lp = length_penalty(lenpen_form, lenpen)
    empty = tokenizer.decode([])
    results = [[Translation(empty, 0.0, [])] for _ in sentences]  # empty sources keep these
    todo = [i for i, ids in enumerate(sources) if ids]
    with (
        tqdm(total=len(sentences), unit="sent", disable=not progress, desc="translate") as bar,
        evaluating(model),
    ):
        bar.update(len(sentences) - len(todo))
        lengths = [len(sources[i]) for i in todo]
        for batch in length_batches(lengths, max_tokens, max_sentences):
            indices = [todo[j] for j in batch]
            src = pad_ids([sources[i] for i in indices], model.pad_id, run_device)  # (b, s)
            found = _search(
                model, src, beam=beam, lp=lp, nbest=nbest, draft=draft, k=draft_k, heads=heads,
                **limits,
            )  # fmt: skip
            cut = max_lengths(torch.tensor([len(sources[i]) for i in indices]), **limits)  # (b,)
            for i, hyps, limit in zip(indices, found, cut.tolist(), strict=True):
                results[i] = [
                    _to_translation(model, tokenizer, t, score, limit) for t, score in hyps
                ]
            bar.update(len(indices))
    return results


def _search(
    model: nn.Module,
    src: Tensor,
    *,
    beam: int,
    lp: Callable[[int], float],
    nbest: int,
    draft: nn.Module | None = None,
    k: int = 4,
    heads: nn.Module | None = None,
    **limits: Any,
) -> list[list[tuple[Tensor, float]]]:
    """``(tokens ending with EOS, score)`` of the ``nbest`` best outputs per source, best first
    (a draft or heads only with ``beam == 1``: :func:`translate` checks)."""
    if beam == 1:  # greedy finds what a beam of 1 finds, without the beam bookkeeping
        if draft is not None:
            out, _ = speculative_greedy(model, draft, src, k=k, **limits)
        elif heads is not None:
            out, _ = blockwise_greedy(model, heads, src, **limits)
        else:
            out = greedy_search(fast_decodable(model), src, **limits)
        lengths = out.lengths.tolist()
        return [[(out.tokens[r, :n], float(out.scores[r]) / lp(n))] for r, n in enumerate(lengths)]
    out = beam_search(
        fast_decodable(model), src, beam_size=beam, length_penalty=lp, nbest=nbest, **limits
    )
    return [[(h.tokens, h.score) for h in hyps] for hyps in out.nbest or []]


def _check_sources(model: nn.Module, sources: list[list[int]], max_tokens: int) -> None:
    """Refuse sources the model cannot encode, naming the first offending one (1-based)."""
    limit = position_limit(model.src_embed)
    vocab = model.src_embed.token.num_embeddings
    total = len(sources)
    for i, ids in enumerate(sources, start=1):
        if limit is not None and len(ids) > limit:
            raise ValueError(
                f"sentence {i} of {total} has {len(ids)} tokens, but the model has only {limit} "
                "learned source positions; shorten or split the sentence"
            )
        if len(ids) > max_tokens:
            raise ValueError(
                f"sentence {i} of {total} has {len(ids)} tokens, more than max_tokens "
                f"({max_tokens}); raise max_tokens or shorten the sentence"
            )
        if ids and not 0 <= min(ids) <= max(ids) < vocab:
            raise ValueError(
                f"sentence {i} of {total} has token ids outside the model's vocabulary of "
                f"{vocab}: does the tokenizer belong to this model?"
            )
