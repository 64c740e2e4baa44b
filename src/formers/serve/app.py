"""The HTTP layer of ``formers serve``: a FastAPI app around one :class:`ModelService`.

=======================  ==================================================================
route                    answer
=======================  ==================================================================
``GET /``                the web page: type a text, see the output and its attention
``GET /health``          ``{"status": "ok", "family", "task", "parameters", "limits"}``
``POST /translate``      ``{"text"|"texts", "beam", "lenpen"}`` -> ``{"translations"}``
``POST /generate``       ``{"prompt", "max_new_tokens", "temperature", "top_k", "top_p",
                         "seed"}`` -> ``{"prompt", "completion", "text", "tokens"}``
``POST /classify``       ``{"text"|"texts"}`` -> ``{"predictions": [{"label",
                         "probabilities"}]}``
``POST /fill``           ``{"text"|"texts", "top_k"}`` -> ``{"fills": [{"text", "masks"}]}``
``POST /attention``      ``{"text", "tgt", "beam"}`` -> the attention record (every layer
                         and head; :meth:`formers.viz.AttentionRecord.to_dict`)
=======================  ==================================================================

Only the task of the loaded model is answered; the others give 404 naming the right one.
Errors are JSON ``{"detail": message}``: 400 malformed JSON or a bad value (an empty text),
411 a body without Content-Length, 413 too much (characters, tokens, texts, body bytes),
415 a body that is not ``application/json``, 422 a field of the wrong type or an unknown field
(the message lists the valid ones).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, model_validator

from formers.serve.page import server_page
from formers.serve.service import ModelService, RequestError


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
    beam: int = 4
    lenpen: float = 0.6


class GenerateRequest(_Request):
    prompt: str
    max_new_tokens: int = 100
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int | None = None


class ClassifyRequest(_Texts):
    pass


class FillRequest(_Texts):
    top_k: int = 5


class AttentionRequest(_Request):
    text: str
    tgt: str | None = None
    beam: int = 4


def create_app(service: ModelService, *, max_body_bytes: int | None = None) -> FastAPI:
    """The app serving ``service``.

    Args:
        service: the loaded model and its limits.
        max_body_bytes: refuse (413) larger request bodies; default: room for ``max_batch``
            texts of ``max_chars`` characters each, JSON-escaped, plus 64 KiB.
    """
    limits = service.limits
    max_body = max_body_bytes or limits.max_batch * limits.max_chars * 6 + 65536
    # no /docs: Swagger UI loads its script from a CDN, and this service works offline;
    # the schema is at /openapi.json
    app = FastAPI(title="formers serve", version="1", docs_url=None, redoc_url=None)
    app.state.service = service
    page = server_page()

    @app.middleware("http")
    async def body_limit(request: Request, call_next: Any) -> Any:
        if request.method == "POST":
            kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if kind != "application/json":
                return _error(
                    415, f"send the body as JSON with Content-Type: application/json (got "
                    f"{kind or 'no Content-Type'})",
                )  # fmt: skip
            length = request.headers.get("content-length")
            if length is None:
                return _error(411, "send the JSON body with a Content-Length header")
            if not length.isdigit() or int(length) > max_body:
                return _error(413, f"the body has {length} bytes; the limit is {max_body}")
        return await call_next(request)

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
        return service.translate(body.all(), beam=body.beam, lenpen=body.lenpen)

    @app.post("/generate")
    def generate(body: GenerateRequest) -> dict[str, Any]:
        return service.generate(
            body.prompt, max_new_tokens=body.max_new_tokens, temperature=body.temperature,
            top_k=body.top_k, top_p=body.top_p, seed=body.seed,
        )  # fmt: skip

    @app.post("/classify")
    def classify(body: ClassifyRequest) -> dict[str, Any]:
        return service.classify(body.all())

    @app.post("/fill")
    def fill(body: FillRequest) -> dict[str, Any]:
        return service.fill(body.all(), top_k=body.top_k)

    @app.post("/attention")
    def attention(body: AttentionRequest) -> dict[str, Any]:
        return service.attention(body.text, body.tgt, beam=body.beam)

    return app


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status)


_FIELDS = {
    "/translate": TranslateRequest,
    "/generate": GenerateRequest,
    "/classify": ClassifyRequest,
    "/fill": FillRequest,
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
