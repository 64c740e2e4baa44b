"""Dynamic batching: concurrent requests with the same options run as one batch on the model.

A server answers many small requests at once; run one by one, each pays for a forward pass of
its own texts, and the model sees batches of one. :class:`MicroBatcher` queues the texts of
every request, and a single worker thread takes whatever has arrived (waiting at most
``max_wait_s`` for more), groups the requests whose options are equal (e.g. the same beam and
length penalty), runs the model once per group and hands each request its own results. The
results are those of running each request alone: :func:`formers.inference.translate.translate`
and :func:`formers.inference.encoder.classify` batch by length and mask the padding, so an
answer does not depend on the other texts in its batch (the tests check this).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

Result = TypeVar("Result")


@dataclass
class _Pending(Generic[Result]):
    texts: list[Any]  # what run reads: texts (the server sends (text, ids) pairs)
    options: Hashable
    done: threading.Event = field(default_factory=threading.Event)
    results: list[Result] | None = None
    error: BaseException | None = None


class MicroBatcher(Generic[Result]):
    """Run ``run(texts, options)`` for many callers at once, one batch per group of equal options.

    Args:
        run: computes one result per text; ``options`` is what the callers passed to
            :meth:`submit` (hashable, e.g. a tuple of keyword arguments).
        lock: held while ``run`` runs (the model's lock, shared with requests that do not batch).
        max_texts: the most texts one call of ``run`` gets (a request is never split; 1: every
            request runs alone).
        max_wait_s: how long the worker waits for more requests after the first one arrives.
    """

    def __init__(
        self,
        run: Callable[[list[Any], Any], Sequence[Result]],
        *,
        lock: threading.Lock,
        max_texts: int = 64,
        max_wait_s: float = 0.002,
    ) -> None:
        self._run, self._lock = run, lock
        self.max_texts, self.max_wait_s = max_texts, max_wait_s
        self._queue: queue.Queue[_Pending[Result]] = queue.Queue()
        self._worker = threading.Thread(target=self._serve, name="formers-batcher", daemon=True)
        self._worker.start()
        self.batches = 0  # calls of run so far (for tests and logs)

    def submit(self, texts: Sequence[Any], options: Hashable = ()) -> list[Result]:
        """Queue ``texts``; block until their results are ready and return them, in order.

        Raises:
            whatever ``run`` raised for the batch holding these texts.
        """
        pending: _Pending[Result] = _Pending(list(texts), options)
        self._queue.put(pending)
        pending.done.wait()
        if pending.error is not None:
            raise pending.error
        assert pending.results is not None
        return pending.results

    def _take(self) -> list[_Pending[Result]]:
        """The first waiting request, and whatever arrives within ``max_wait_s`` after it."""
        taken = [self._queue.get()]
        while True:
            try:
                taken.append(self._queue.get(timeout=self.max_wait_s))
            except queue.Empty:
                return taken

    def _serve(self) -> None:
        while True:
            taken = self._take()
            groups: dict[Hashable, list[list[_Pending[Result]]]] = {}
            for pending in taken:  # equal options together, at most max_texts texts a batch
                batches = groups.setdefault(pending.options, [[]])
                if (
                    batches[-1]
                    and sum(len(p.texts) for p in batches[-1]) + len(pending.texts) > self.max_texts
                ):
                    batches.append([])
                batches[-1].append(pending)
            for batches in groups.values():
                for batch in batches:
                    self._run_batch(batch)

    def _run_batch(self, batch: list[_Pending[Result]]) -> None:
        texts = [text for pending in batch for text in pending.texts]
        try:
            with self._lock:
                results = list(self._run(texts, batch[0].options))
                self.batches += 1
        except BaseException as error:  # every caller of the batch gets the error
            for pending in batch:
                pending.error = error
                pending.done.set()
            return
        start = 0
        for pending in batch:
            pending.results = results[start : start + len(pending.texts)]
            start += len(pending.texts)
            pending.done.set()


def unpack_encoded(
    tokenizer: Any, items: list[tuple[str, list[int]]]
) -> tuple[_Encoded, list[str]]:
    """A tokenizer that knows the ids of a batch's ``(text, ids)`` items, and the texts (the
    server tokenizes each text once, when it checks the request)."""
    return _Encoded(tokenizer, dict(items)), [text for text, _ in items]


class _Encoded:
    """A tokenizer that knows the ids of some texts already (a served text is tokenized once,
    when its request is checked); everything else is the tokenizer's own."""

    def __init__(self, tokenizer: Any, known: dict[str, list[int]]) -> None:
        self._tokenizer, self._known = tokenizer, known

    def encode(self, text: str, *, max_length: int | None = None) -> list[int]:
        ids = self._known.get(text)
        if ids is not None and (max_length is None or len(ids) <= max_length):
            return list(ids)  # a cut (a text over max_length) is the tokenizer's to make
        if max_length is None:
            return self._tokenizer.encode(text)
        return self._tokenizer.encode(text, max_length=max_length)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tokenizer, name)
