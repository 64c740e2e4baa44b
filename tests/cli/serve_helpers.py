"""Run a ``formers serve`` app on a free port of 127.0.0.1 in a background thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from formers.serve import Limits, ModelService


@contextmanager
def running(checkpoint, limits: Limits | None = None, **app_options) -> Iterator[str]:
    """Serve ``checkpoint`` over real HTTP; yield the base URL; stop the server afterwards."""
    import uvicorn

    from formers.serve import create_app

    service = ModelService.load(checkpoint, limits=limits)
    config = uvicorn.Config(
        create_app(service, **app_options), host="127.0.0.1", port=0, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
