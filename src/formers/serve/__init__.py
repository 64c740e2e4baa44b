"""``formers serve``: one checkpoint behind a small HTTP service with a web page.

>>> service = ModelService.load("runs/demo")          # doctest: +SKIP
>>> app = create_app(service)                          # any ASGI server runs it; the CLI: uvicorn

Needs FastAPI and uvicorn: ``pip install formers[serve]``.
"""

from formers.serve.limits import Limits, RequestError
from formers.serve.service import ModelService

__all__ = ["Limits", "ModelService", "RequestError", "create_app"]


def __getattr__(name: str):  # the app needs FastAPI; the service and its limits do not
    if name == "create_app":
        from formers.serve.app import create_app

        return create_app
    raise AttributeError(f"module 'formers.serve' has no attribute {name!r}")
