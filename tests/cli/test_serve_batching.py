"""MicroBatcher: concurrent requests share batches, never mix options, and get their own results."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from formers.serve.batching import MicroBatcher


def _slow_upper(calls: list[tuple[list[str], tuple]]):
    def run(texts: list[str], options: tuple) -> list[str]:
        calls.append((list(texts), options))
        time.sleep(0.02)  # while one batch runs, the next requests queue up
        suffix = options[0] if options else ""
        return [text.upper() + suffix for text in texts]

    return run


def test_concurrent_requests_share_batches_and_get_their_own_results():
    calls: list = []
    batcher = MicroBatcher(_slow_upper(calls), lock=threading.Lock(), max_texts=64)
    requests = [[f"text {i}", f"more {i}"][: 1 + i % 2] for i in range(40)]
    with ThreadPoolExecutor(max_workers=40) as pool:
        results = list(pool.map(lambda texts: batcher.submit(texts, ("!",)), requests))
    assert results == [[t.upper() + "!" for t in texts] for texts in requests]
    assert batcher.batches == len(calls) < 40  # merged: fewer model calls than requests
    assert sum(len(texts) for texts, _ in calls) == sum(len(r) for r in requests)


def test_options_are_never_mixed_and_batches_respect_max_texts():
    calls: list = []
    batcher = MicroBatcher(_slow_upper(calls), lock=threading.Lock(), max_texts=5)
    jobs = [(["a", "b"], ("1",)), (["c"], ("2",)), (["d", "e", "f"], ("1",)), (["g"] * 9, ("2",))]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda job: batcher.submit(*job), jobs * 3))
    assert results == [[t.upper() + options[0] for t in texts] for texts, options in jobs * 3]
    for texts, _ in calls:
        # a batch holds one option (checked by the results above) and at most 5 texts, unless
        # it is one request of 9 texts: a request is never split
        assert len(texts) <= 5 or texts == ["g"] * 9


def test_an_error_reaches_every_caller_of_its_batch_and_the_batcher_goes_on():
    def run(texts: list[str], options: tuple) -> list[str]:
        if "boom" in texts:
            raise ValueError("boom in the batch")
        return texts

    batcher = MicroBatcher(run, lock=threading.Lock())
    with pytest.raises(ValueError, match="boom in the batch"):
        batcher.submit(["boom"])
    assert batcher.submit(["fine"]) == ["fine"]
