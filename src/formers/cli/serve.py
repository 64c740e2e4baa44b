"""``formers serve``: run a checkpoint behind a small HTTP service with a web page.

The model's task decides the endpoint (``POST /translate``, ``/generate``, ``/classify`` or
``/fill``); every model also answers ``POST /attention`` and ``GET /health``, and ``GET /``
is a page where a person types a text and sees the output and its attention. See
:mod:`formers.serve.app` for the requests and answers. It binds to 127.0.0.1 unless told
otherwise: the service has no authentication.

Needs FastAPI and uvicorn (``pip install formers[serve]``).
"""

from __future__ import annotations

import argparse

from formers.cli.threads import add_threads_option, set_threads
from formers.serve.limits import Limits

DEFAULTS = Limits()


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "serve", help="serve a checkpoint over HTTP (JSON endpoints and a web page)"
    )
    p.add_argument("--checkpoint", required=True, metavar="DIR", help="checkpoint directory")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1: this host)")
    p.add_argument("--port", type=int, default=8000, help="port (8000; 0: any free port)")
    p.add_argument("--device", default="cpu", help="cpu (default), auto, cuda:N")
    add_threads_option(p)
    for name, help_text in (
        ("max_chars", "characters in one text"),
        ("max_tokens", "tokens in one text"),
        ("max_batch", "texts in one request"),
        ("max_new_tokens", "tokens one /generate may produce"),
        ("max_beam", "widest beam of one /translate"),
    ):
        flag = "--" + name.replace("_", "-")
        default = getattr(DEFAULTS, name)
        p.add_argument(
            flag, type=int, default=default, metavar="N", help=f"{help_text} ({default})"
        )
    p.add_argument(
        "--no-batching",
        action="store_true",
        help="run each request alone (default: concurrent requests share batches)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be in [0, 65535], got {args.port}")
    limits = Limits(
        max_chars=args.max_chars, max_tokens=args.max_tokens, max_batch=args.max_batch,
        max_new_tokens=args.max_new_tokens, max_beam=args.max_beam,
    )  # fmt: skip
    try:
        import uvicorn

        from formers.serve.app import create_app
    except ImportError as error:
        raise ValueError(
            f"formers serve needs FastAPI and uvicorn ({error.name} is missing): "
            "pip install 'formers[serve]'"
        ) from None
    from formers.serve.service import ModelService

    set_threads(args.threads)
    service = ModelService.load(
        args.checkpoint, device=args.device, limits=limits, batching=not args.no_batching
    )
    info = service.describe()
    print(
        f"serving {info['family']} model {args.checkpoint} ({info['parameters']:,} parameters): "
        f"POST /{info['task']}, POST /attention, GET /health, and the page at GET /",
        flush=True,
    )
    uvicorn.run(create_app(service), host=args.host, port=args.port, log_level="info")
    return 0
