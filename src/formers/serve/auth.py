"""An API key for ``formers serve``: ``Authorization: Bearer KEY`` on every route but the two
that hold nothing private.

With a key, every request needs the header, except ``GET /health`` (for load balancers and
monitors) and the static page at ``GET /`` (HTML and JavaScript that hold no data; the page asks
its user for the key and sends it with each of its requests). A missing or wrong key gets 401 with
``WWW-Authenticate: Bearer``. Keys are compared in constant time (:func:`hmac.compare_digest`),
so the answer's timing says nothing about how much of a guess was right.

A plain ASGI middleware, like :class:`~formers.serve.app.BodyCheck`, so that it refuses a request
before the body is read and leaves streamed answers alone.
"""

from __future__ import annotations

import hmac
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import JSONResponse

OPEN = {("GET", "/health"), ("GET", "/"), ("HEAD", "/"), ("GET", "/favicon.ico")}


class BearerAuth:
    """Refuse (401) a request without ``Authorization: Bearer KEY`` (see the module docstring).

    Args:
        app: the ASGI app it guards.
        key: the API key (non-empty).
    """

    def __init__(self, app: Any, key: str) -> None:
        if not key:
            raise ValueError("the API key is empty: give a non-empty key")
        self.app = app
        self._expected = f"Bearer {key}".encode()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and (scope["method"], scope["path"]) not in OPEN:
            given = Headers(scope=scope).get("authorization", "").encode()
            if not hmac.compare_digest(given, self._expected):
                detail = (
                    "a wrong API key: send Authorization: Bearer KEY with the key the server was "
                    "started with" if given else
                    "this server needs its API key: send the header Authorization: Bearer KEY"
                )  # fmt: skip
                response = JSONResponse(
                    {"detail": detail}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
