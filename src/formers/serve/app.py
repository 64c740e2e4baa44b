"""The HTTP layer of ``formers serve``: a FastAPI app around one :class:`ModelService`.

=======================  ==================================================================
route                    answer
=======================  ==================================================================
``GET /``                the web page: type a text, see the output and its attention
``GET /health``          ``{"status": "ok", "family", "task", "parameters", "limits"}``
``POST /translate``      ``{"text"|"texts", "beam", "lenpen", "lenpen_form"}``
                         -> ``{"translations"}``
``POST /generate``       ``{"prompt", "max_new_tokens", "temperature", "top_k", "top_p",
                         "seed"}`` -> ``{"prompt", "completion", "text", "tokens"}``;
                         with ``"stream": true``, server-sent events as the tokens come
                         (``{"token"}`` ..., then ``{"done": true, ...}`` as above)
``POST /classify``       ``{"text"|"texts"}`` -> ``{"predictions": [{"label",
                         "probabilities"}]}``
``POST /fill``           ``{"text"|"texts", "top_k"}`` -> ``{"fills": [{"text", "masks"}]}``
``POST /embed``          ``{"text"|"texts"}`` -> ``{"embeddings": [[...]]}`` (mean-pooled,
                         L2-normalized; a BERT body without a head)
``POST /attention``      ``{"text", "tgt", "beam"}`` -> the attention record (every layer
                         and head; :meth:`formers.viz.AttentionRecord.to_dict`)
=======================  ==================================================================

Only the task of the loaded model is answered; the others give 404 naming the right one. With an
API key (:mod:`formers.serve.auth`), every route but ``GET /health`` and the page needs
``Authorization: Bearer KEY`` (401 without it).
Errors are JSON ``{"detail": message}``: 400 malformed JSON or a bad value (an empty text),
411 a body without Content-Length, 413 too much (characters, tokens, texts, body bytes),
415 a body that is not ``application/json``, 422 a field of the wrong type or an unknown field
(the message lists the valid ones).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, model_validator
from starlette.datastructures import Headers

from formers.serve.auth import BearerAuth
from formers.serve.limits import RequestError
from formers.serve.page import server_page
from formers.serve.service import ModelService


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Texts(_Request):
    """``text`` (one) or ``texts`` (a batch): exactly one of them."""

    text: str | None = None
    texts: list[str] | None = None

    @model_validator(mode="after")
    def _one_of(self) -> _Texts:
        if (self.text is None) == (self.texts is None):
            raise ValueError("give exactly one of 'text' (a string) or 'texts' (a list)")
        return self

    def all(self) -> list[str]:
        return [self.text] if self.text is not None else list(self.texts or [])


class TranslateRequest(_Texts):
    # None: the checkpoint recipe's [decode] value (GET /health lists them under "defaults")
    beam: int | None = None
    lenpen: float | None = None
    lenpen_form: str | None = None


class GenerateRequest(_Request):
    prompt: str
    stream: bool = False
    max_new_tokens: int = 100
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int | None = None


class ClassifyRequest(_Texts):
    pass


class FillRequest(_Texts):
    top_k: int = 5


class EmbedRequest(_Texts):
    pass


class AttentionRequest(_Request):
    text: str
    tgt: str | None = None
    beam: int | None = None  # None: as /translate's default


def create_app(
    service: ModelService, *, max_body_bytes: int | None = None, api_key: str | None = None
) -> FastAPI:
    """The app serving ``service``.

    Args:
        service: the loaded model and its limits.
        max_body_bytes: refuse (413) larger request bodies; default: room for ``max_batch``
            texts of ``max_chars`` characters each, JSON-escaped, plus 64 KiB.
        api_key: require ``Authorization: Bearer KEY`` on every route but ``GET /health`` and
            the page (:mod:`formers.serve.auth`); ``None``: no key.
    """
    limits = service.limits
    max_body = max_body_bytes or limits.max_batch * limits.max_chars * 6 + 65536
    # no /docs: Swagger UI loads its script from a CDN, and this service works offline;
    # the schema is at /openapi.json
    app = FastAPI(title="formers serve", version="1", docs_url=None, redoc_url=None)
    app.state.service = service
    page = server_page()

    app.add_middleware(BodyCheck, max_body=max_body)
    if api_key is not None:  # added last, so it runs first: a refusal before any other check
        app.add_middleware(BearerAuth, key=api_key)

    @app.exception_handler(RequestError)
    async def refused(request: Request, error: RequestError) -> JSONResponse:
        return _error(error.status, str(error))

    @app.exception_handler(ValueError)  # the library's own checks (e.g. a bad sampling option)
    async def bad_value(request: Request, error: ValueError) -> JSONResponse:
        return _error(400, str(error))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        return _validation_error(error, request.url.path)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        return page

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return service.describe()

    # plain `def` routes: FastAPI runs them in its thread pool; the service's lock serializes
    # the model, so slow requests queue instead of failing
    @app.post("/translate")
    def translate(body: TranslateRequest) -> dict[str, Any]:
        return service.translate(
            body.all(), beam=body.beam, lenpen=body.lenpen, lenpen_form=body.lenpen_form
        )

    @app.post("/generate", response_model=None)
    def generate(body: GenerateRequest) -> dict[str, Any] | StreamingResponse:
        options = body.model_dump(exclude={"prompt", "stream"})
        if not body.stream:
            return service.generate(body.prompt, **options)
        # a refused request raises here, before anything is sent
        events = service.generate_events(body.prompt, **options)
        return StreamingResponse(_server_sent(events), media_type="text/event-stream")

    @app.post("/classify")
    def classify(body: ClassifyRequest) -> dict[str, Any]:
        return service.classify(body.all())

    @app.post("/fill")
    def fill(body: FillRequest) -> dict[str, Any]:
        return service.fill(body.all(), top_k=body.top_k)

    @app.post("/embed")
    def embed(body: EmbedRequest) -> dict[str, Any]:
        return service.embed(body.all())

    @app.post("/attention")
    def attention(body: AttentionRequest) -> dict[str, Any]:
        return service.attention(body.text, body.tgt, beam=body.beam)

    return app


class BodyCheck:
    """Refuse a POST whose body is not JSON (415), has no length (411) or is too long (413),
    before it is read.

    A plain ASGI middleware: Starlette's ``BaseHTTPMiddleware`` (``@app.middleware``) would hide
    a client's disconnect from a streamed answer, which would then run to its end.
    """

    def __init__(self, app: Any, max_body: int) -> None:
        self.app, self.max_body = app, max_body

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            refusal = self.refusal(Headers(scope=scope))
            if refusal is not None:
                await _error(*refusal)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def refusal(self, headers: Headers) -> tuple[int, str] | None:
        kind = headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/json":
            return 415, (
                "send the body as JSON with Content-Type: application/json "
                f"(got {kind or 'no Content-Type'})"
            )
        length = headers.get("content-length")
        if length is None:
            return 411, "send the JSON body with a Content-Length header"
        if not length.isdigit() or int(length) > self.max_body:
            return 413, f"the body has {length} bytes; the limit is {self.max_body}"
        return None


async def _server_sent(events: Iterator[dict]) -> AsyncIterator[str]:
    """Server-sent events (``text/event-stream``): one ``data: JSON`` message per event.

    Each event is computed in a worker thread. When the client goes away, Starlette cancels this
    generator; ``finally`` then closes ``events`` at once, which releases the model (left to the
    garbage collector, the closing could wait for a collection cycle).
    """
    try:
        while (event := await anyio.to_thread.run_sync(next, events, None)) is not None:
            yield f"data: {json.dumps(event, ensure_ascii=False)}\n\n"
    finally:
        events.close()


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status)


_FIELDS = {
    "/translate": TranslateRequest,
    "/generate": GenerateRequest,
    "/classify": ClassifyRequest,
    "/fill": FillRequest,
    "/embed": EmbedRequest,
    "/attention": AttentionRequest,
}


def _validation_error(error: RequestValidationError, path: str) -> JSONResponse:
    """400 for a body that is not JSON, else 422 with one readable line per problem."""
    problems = error.errors()
    if any(p.get("type") == "json_invalid" for p in problems):
        detail = next(p for p in problems if p.get("type") == "json_invalid").get("ctx", {})
        return _error(400, f"malformed JSON: {detail.get('error', 'cannot parse the body')}")
    lines = []
    for problem in problems:
        where = ".".join(str(part) for part in problem.get("loc", ()) if part != "body")
        if problem.get("type") == "extra_forbidden":
            valid = ", ".join(_FIELDS[path].model_fields) if path in _FIELDS else "?"
            lines.append(f"unknown field {where!r}; valid fields: {valid}")
        elif problem.get("type") == "missing" and not where:
            lines.append("send a JSON object body")
        else:
            message = str(problem.get("msg", "invalid")).removeprefix("Value error, ")
            lines.append(f"{where or 'body'}: {message}")
    return _error(422, "; ".join(lines))
