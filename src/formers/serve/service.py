"""The model behind ``formers serve``: one checkpoint, the task it does, and the request limits.

:class:`ModelService` holds a loaded checkpoint of any family and answers the requests the
HTTP layer (:mod:`formers.serve.app`) passes on, as plain dicts ready to be sent as JSON:

=================  ===============  ======================================================
family             task             method
=================  ===============  ======================================================
encoder-decoder    ``translate``    :meth:`ModelService.translate` (beam search)
decoder-only       ``generate``     :meth:`ModelService.generate` (KV-cached sampling)
encoder-only       ``classify``     :meth:`ModelService.classify` (classification head)
encoder-only       ``fill``         :meth:`ModelService.fill` (masked LM head)
encoder-only       ``embed``        :meth:`ModelService.embed` (a body without a head)
any                (all)            :meth:`ModelService.attention` (:mod:`formers.viz`)
=================  ===============  ======================================================

Every text is checked against :class:`Limits` before the model sees it; a refused request
raises :class:`RequestError`, which carries the HTTP status to answer with (400 for a bad value,
413 for too much, 404 for a task this model does not do). The model runs under a lock, one
batch at a time: PyTorch already uses every core for one, and the lock bounds memory whatever
the number of connections. Concurrent ``translate``, ``classify``, ``fill`` and ``embed``
requests are batched together (:class:`~formers.serve.batching.MicroBatcher`); ``generate`` and
``attention`` requests run one at a time.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from formers.decoding.options import check_option
from formers.serve.batching import MicroBatcher, unpack_encoded
from formers.serve.limits import Limits, RequestError
from formers.training.config import recipe_decode

# the task a model of each kind serves (an encoder by its head: see ModelService)
TASK_OF_KIND = {"encoder-decoder": "translate", "decoder-only": "generate"}
# translate()'s max_len_b: a translation has at most (source tokens + 50) tokens, so a target
# given to /attention may be that much longer than a source (it is often the service's own
# output), and twice as many characters
TARGET_SLACK = 50


class ModelService:
    """One loaded checkpoint answering requests (see the module docstring).

    Args:
        model: the model, in eval mode.
        tokenizer: its tokenizer.
        config: the checkpoint's ``config.json`` contents (``architecture``, ``model``).
        limits: what one request may ask for.
        name: how :meth:`describe` names the model (e.g. the checkpoint directory).
        batching: let concurrent requests share batches (``False``: each runs alone).
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        config: dict[str, Any],
        *,
        limits: Limits | None = None,
        name: str = "",
        batching: bool = True,
    ) -> None:
        self.model, self.tokenizer, self.name = model.eval(), tokenizer, name
        self.limits = limits or Limits()
        from formers.models.registry import get_family

        self.family = config.get("architecture", "transformer")
        self.kind = get_family(self.family).kind
        model_config = config.get("model", {})
        if self.kind == "encoder-only":
            if model_config.get("num_labels", 0) > 0:
                self.task = "classify"
            elif model_config.get("mlm_head", False):
                self.task = "fill"
            else:  # a body without a head: sentence embeddings
                self.task = "embed"
        else:
            self.task = TASK_OF_KIND[self.kind]
        self.max_tokens = min(self.limits.max_tokens, self._model_token_limit(model_config))
        if self.kind == "encoder-only":  # a sentence-transformers model's own max_seq_length
            from formers.inference.encoder import encode_length

            cut = encode_length(config)  # refused beyond it, never cut: [CLS] and [SEP] added
            self.max_tokens = min(self.max_tokens, cut - 2) if cut else self.max_tokens
        # /translate's defaults: the recipe's [decode] (training saves it), else the paper's
        recipe = recipe_decode(config)
        self.decode = {k: recipe[k] for k in ("beam", "lenpen", "lenpen_form")}
        self.decode["beam"] = min(self.decode["beam"], self.limits.max_beam)
        self._lock = threading.Lock()
        # concurrent requests of the batchable tasks share forward passes (generation samples
        # each prompt with its own seed, one request at a time)
        run = {"translate": self._translate_batch, "classify": self._classify_batch,
               "fill": self._fill_batch, "embed": self._embed_batch}.get(self.task)  # fmt: skip
        self.batcher = (
            MicroBatcher(
                run, lock=self._lock, max_texts=2 * self.limits.max_batch if batching else 1
            )
            if run is not None
            else None
        )

    @classmethod
    def load(
        cls,
        checkpoint: str | os.PathLike,
        *,
        device: str = "cpu",
        limits: Limits | None = None,
        batching: bool = True,
        show_path: bool = False,
        int8: bool = False,
    ) -> ModelService:
        """Load ``checkpoint`` (any family) onto ``device``; see the class for the options.
        ``GET /health`` names the checkpoint by its folder's name, or by its absolute path on
        the server with ``show_path`` (which a client has no business knowing by default).
        ``int8`` serves the int8 copy (:mod:`formers.inference.int8`; CPU only).

        Raises:
            CheckpointError: a missing or broken checkpoint.
            ValueError: a checkpoint without a tokenizer.
        """
        from formers.inference.int8 import decoding_device, prepare_for_decoding
        from formers.training.checkpoint import load_model, require_tokenizer

        resolved = decoding_device(device, int8=int8)  # refused before loading
        model, tokenizer, config = load_model(checkpoint, device=resolved)
        model = prepare_for_decoding(model, int8=int8)  # float32: a faster layout, same outputs
        require_tokenizer(tokenizer, checkpoint, "serving")
        path = Path(checkpoint).resolve()
        name = str(path) if show_path else path.name
        return cls(model, tokenizer, config, limits=limits, name=name, batching=batching)

    def _model_token_limit(self, model_config: dict[str, Any]) -> int:
        if self.kind == "decoder-only":
            return int(self.model.context_length)
        limit = int(model_config.get("max_positions", self.limits.max_tokens))
        return limit - 2 if self.kind == "encoder-only" else limit  # BERT adds [CLS] and [SEP]

    def describe(self) -> dict[str, Any]:
        """What ``GET /health`` answers: the model, its task, the limits, and how many batches
        the batcher has run (``None`` for a task that does not batch)."""
        from formers.inference.int8 import count_parameters, is_int8

        parameters = count_parameters(self.model)
        limits = {**self.limits.to_dict(), "max_tokens": self.max_tokens}
        return {
            "status": "ok",
            "checkpoint": self.name,
            "family": self.kind,
            "task": self.task,
            "parameters": parameters,
            "int8": is_int8(self.model),
            "limits": limits,
            "batches": self.batcher.batches if self.batcher is not None else None,
            **({"defaults": self.decode} if self.task == "translate" else {}),
        }

    # --- checks --------------------------------------------------------------------------

    def require_task(self, task: str) -> None:
        """Refuse (404) a task this model does not do, naming the one it does."""
        if task != self.task:
            raise RequestError(
                f"this {self.kind} model does not {task}; it answers "
                f"POST /{self.task} (and POST /attention)",
                status=404,
            )

    def check_texts(
        self,
        texts: Sequence[str],
        what: str = "text",
        *,
        max_chars: int | None = None,
        max_tokens: int | None = None,
    ) -> list[list[int]]:
        """The token ids of each text, after checking the batch and each text against the limits.

        Raises:
            RequestError: no texts (400), more than ``max_batch`` texts (413), a blank text
                (400), a text of more than ``max_chars`` characters or ``max_tokens`` tokens
                (413). Texts are named by position (``texts[3]``) when there are several.
        """
        max_chars, max_tokens = max_chars or self.limits.max_chars, max_tokens or self.max_tokens
        if not texts:
            raise RequestError(f"no {what}s given: send at least one")
        if len(texts) > self.limits.max_batch:
            raise RequestError(
                f"{len(texts)} {what}s in one request; the limit is {self.limits.max_batch}",
                status=413,
            )
        ids = []
        for i, text in enumerate(texts):
            where = f"{what}s[{i}]" if len(texts) > 1 else what
            if not text.strip():
                raise RequestError(f"{where} is empty: give a non-blank text")
            if len(text) > max_chars:
                raise RequestError(
                    f"{where} has {len(text)} characters; the limit is {max_chars}",
                    status=413,
                )
            tokens = [int(t) for t in self.tokenizer.encode(text)]
            if len(tokens) > max_tokens:
                raise RequestError(
                    f"{where} has {len(tokens)} tokens; the limit is {max_tokens}",
                    status=413,
                )
            ids.append(tokens)
        return ids

    # --- tasks ---------------------------------------------------------------------------

    def translate(
        self,
        texts: Sequence[str],
        *,
        beam: int | None = None,
        lenpen: float | None = None,
        lenpen_form: str | None = None,
    ) -> dict:
        """``{"translations": [{"text", "score", "truncated"}, ...]}`` in the order of ``texts``
        (``lenpen_form``: ``"gnmt"`` or ``"power"``, see :func:`formers.inference.translate`).
        An option left ``None`` is the checkpoint recipe's (``self.decode``)."""
        self.require_task("translate")
        o = self._search_options(beam=beam, lenpen=lenpen, lenpen_form=lenpen_form)
        found = self._submit(texts, (o["beam"], float(o["lenpen"]), o["lenpen_form"]))
        return {
            "translations": [
                {"text": t.text, "score": t.score, "truncated": t.truncated} for t in found
            ]
        }

    def _submit(self, texts: Sequence[str], options: tuple = ()) -> list[Any]:
        """Check ``texts`` (tokenizing each, once) and run them in the batcher with their ids."""
        ids = self.check_texts(texts)
        return self.batcher.submit(list(zip(texts, ids, strict=True)), options)

    def _search_options(self, **given: Any) -> dict[str, Any]:
        """``beam``, ``lenpen`` and ``lenpen_form`` for a translation: each given (not
        ``None``), else the recipe's (``self.decode``). A value outside the option's range is
        refused with 400, a beam over ``--max-beam`` with 413."""
        from formers.inference.translate import check_lenpen_form

        o = {**self.decode, **{k: v for k, v in given.items() if v is not None}}
        try:
            check_option("beam", o["beam"])
            check_option("lenpen", o["lenpen"])
            check_lenpen_form(o["lenpen_form"])
        except ValueError as error:
            raise RequestError(str(error)) from None
        self._check_limit("beam", o["beam"], self.limits.max_beam, "--max-beam")
        return o

    @staticmethod
    def _check_limit(name: str, value: int, limit: int, flag: str) -> None:
        """Refuse (413) a value over one of the server's limits."""
        if value > limit:
            raise RequestError(
                f"{name} {value} is over this server's limit of {limit} ({flag})", status=413
            )

    def _translate_batch(
        self, items: list[tuple[str, list[int]]], options: tuple[int, float, str]
    ) -> list[Any]:
        from formers.inference.translate import translate

        beam, lenpen, form = options
        tokenizer, texts = unpack_encoded(self.tokenizer, items)
        found = translate(self.model, tokenizer, texts, beam=beam, lenpen=lenpen, lenpen_form=form)
        return [hypotheses[0] for hypotheses in found]

    def generate(self, prompt: str, **options: Any) -> dict:
        """``{"prompt", "completion", "text", "tokens"}``: the prompt continued (see
        :meth:`generate_events` for the options)."""
        *_, last = self.generate_events(prompt, **options)
        return {key: value for key, value in last.items() if key != "done"}

    def generate_events(
        self,
        prompt: str,
        *,
        max_new_tokens: int = 100,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int | None = None,
    ) -> Iterator[dict]:
        """Check the request now; return the events of its generation, as they happen.

        Events: ``{"token": text}`` for each new piece of text (a token's text can wait for the
        next token, e.g. the second half of a UTF-8 character), then ``{"done": true, "prompt",
        "completion", "text", "tokens"}``. The model is held from the first event to the last,
        or until the iterator is closed (a client that goes away).

        Raises:
            RequestError: the request is refused (before any event).
            ValueError: a bad sampling option (before any event).
        """
        from formers.inference.generate import generate_stream

        self.require_task("generate")
        try:
            check_option("max_new_tokens", max_new_tokens)
        except ValueError as error:
            raise RequestError(str(error)) from None
        limit = self.limits.max_new_tokens
        self._check_limit("max_new_tokens", max_new_tokens, limit, "--max-new-tokens")
        (ids,) = self.check_texts([prompt], "prompt")
        tokens = generate_stream(
            self.model,
            ids,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            seed=seed,
        )  # checks the options now; the model runs as the tokens are read
        return self._events(prompt, ids, tokens)

    def _events(self, prompt: str, ids: list[int], tokens: Iterator[int]) -> Iterator[dict]:
        from formers.inference.detokenize import IncrementalDecoder

        decoder = IncrementalDecoder(self.tokenizer, ids)
        pieces = []
        with self._lock:
            for piece in decoder.pieces(tokens):
                pieces.append(piece)
                yield {"token": piece}
        completion = "".join(pieces)
        yield {"done": True, "prompt": prompt, "completion": completion,
               "text": prompt + completion, "tokens": len(decoder.ids) - len(ids)}  # fmt: skip

    def classify(self, texts: Sequence[str]) -> dict:
        """``{"predictions": [{"label", "probabilities"}, ...]}`` in the order of ``texts``."""
        self.require_task("classify")
        probs = self._submit(texts)
        return {
            "predictions": [
                {"label": int(row.argmax()), "probabilities": row.tolist()} for row in probs
            ]
        }

    def _classify_batch(self, items: list[tuple[str, list[int]]], options: tuple) -> list[Any]:
        from formers.inference.encoder import classify

        return list(classify(self.model, *unpack_encoded(self.tokenizer, items)))

    def fill(self, texts: Sequence[str], *, top_k: int = 5) -> dict:
        """``{"fills": [{"text", "masks": [[{"token", "probability"}, ...]]}, ...]}``."""
        self.require_task("fill")
        if not 1 <= top_k <= 100:
            raise RequestError(f"top_k must be in [1, 100], got {top_k}")
        filled = self._submit(texts, (top_k,))
        return {
            "fills": [
                {"text": f.text,
                 "masks": [[{"token": t, "probability": p} for t, p in m] for m in f.candidates]}
                for f in filled
            ]
        }  # fmt: skip

    def _fill_batch(self, items: list[tuple[str, list[int]]], options: tuple[int]) -> list[Any]:
        from formers.inference.encoder import fill_masks

        return fill_masks(self.model, *unpack_encoded(self.tokenizer, items), top_k=options[0])

    def embed(self, texts: Sequence[str]) -> dict:
        """``{"embeddings": [[...], ...]}``: mean-pooled, L2-normalized sentence embeddings."""
        self.require_task("embed")
        return {"embeddings": [row.tolist() for row in self._submit(texts)]}

    def _embed_batch(self, items: list[tuple[str, list[int]]], options: tuple) -> list[Any]:
        from formers.inference.encoder import embed

        return list(embed(self.model, *unpack_encoded(self.tokenizer, items)))

    def attention(self, text: str, tgt: str | None = None, *, beam: int | None = None) -> dict:
        """Every layer's and head's attention on ``text`` (:meth:`AttentionRecord.to_dict`).

        For a translation model the decoder reads ``tgt`` (forced decoding; it may have
        ``TARGET_SLACK`` more tokens and twice the characters a source may have) or, without
        it, the translation of ``text`` that :meth:`translate` gives with ``beam`` (``None``:
        its default).
        """
        from formers.viz import capture_attention

        if tgt is not None and self.kind != "encoder-decoder":
            raise RequestError(f"tgt is for translation models; this one does {self.task}")
        decode = self._search_options(beam=beam)
        self.check_texts([text])
        if tgt is not None:
            self.check_texts(
                [tgt], "tgt", max_chars=2 * self.limits.max_chars,
                max_tokens=self.max_tokens + TARGET_SLACK,
            )  # fmt: skip
        with self._lock, torch.inference_mode():
            record = capture_attention(self.model, self.tokenizer, text, tgt, **decode)
        return record.to_dict()
