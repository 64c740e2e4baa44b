"""Ctrl-C during training: the first one stops at the next step boundary, the second at once.

A checkpoint written in the middle of an optimizer step would not resume exactly, so the first
SIGINT only calls back (the trainer then finishes its step, saves and exits); a second one raises
:class:`KeyboardInterrupt` at once, for a user who does not want to wait.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def deferred_interrupt(on_first: Callable[[], None]) -> Iterator[None]:
    """Within the block, the first Ctrl-C calls ``on_first``; the next raises
    :class:`KeyboardInterrupt`. The previous handler is restored afterwards. Off the main thread
    (where signals cannot be handled) Ctrl-C keeps its default behaviour."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    seen = False

    def handler(signum, frame):
        nonlocal seen
        if seen:
            raise KeyboardInterrupt
        seen = True
        on_first()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
