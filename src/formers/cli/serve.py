"""``formers serve``: run a checkpoint behind a small HTTP service with a web page.

The model's task decides the endpoint (``POST /translate``, ``/generate``, ``/classify`` or
``/fill``); every model also answers ``POST /attention`` and ``GET /health``, and ``GET /``
is a page where a person types a text and sees the output and its attention. See
:mod:`formers.serve.app` for the requests and answers. It binds to 127.0.0.1 unless told
otherwise. ``--api-key KEY`` (or the environment variable ``FORMERS_API_KEY``) makes every route
but ``GET /health`` and the page require ``Authorization: Bearer KEY``
(:mod:`formers.serve.auth`); binding to an address other than the loopback without a key is
refused unless ``--insecure`` says so (then with a warning).

Needs FastAPI and uvicorn (``pip install formers[serve]``).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys

from formers.cli.threads import add_threads_option, set_threads
from formers.inference.int8 import add_int8_option
from formers.serve.limits import Limits

DEFAULTS = Limits()
KEY_VARIABLE = "FORMERS_API_KEY"


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "serve", help="serve a checkpoint over HTTP (JSON endpoints and a web page)"
    )
    p.add_argument("--checkpoint", required=True, metavar="DIR", help="checkpoint directory")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1: this host)")
    p.add_argument("--port", type=int, default=8000, help="port (8000; 0: any free port)")
    p.add_argument(
        "--api-key", default=None, metavar="KEY",
        help=f"require Authorization: Bearer KEY (default: ${KEY_VARIABLE}, else no key)",
    )  # fmt: skip
    p.add_argument(
        "--insecure", action="store_true",
        help="allow a non-loopback --host without an API key (anyone who can reach it may use it)",
    )  # fmt: skip
    p.add_argument(
        "--show-path", action="store_true",
        help="GET /health names the checkpoint by its absolute path (default: its folder's name)",
    )  # fmt: skip
    p.add_argument("--device", default="cpu", help="cpu (default), auto, cuda:N")
    add_int8_option(p)
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


def is_loopback(host: str) -> bool:
    """Whether binding to ``host`` keeps the server on this machine (127.0.0.0/8, ::1,
    ``localhost``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to any address
        return False


def api_key(args: argparse.Namespace) -> str | None:
    """The key from ``--api-key`` or the environment, checked against the host it guards.

    Raises:
        ValueError: an empty key, or a non-loopback ``--host`` without a key or ``--insecure``.
    """
    key = args.api_key if args.api_key is not None else os.environ.get(KEY_VARIABLE)
    if key is not None and not key.strip():
        raise ValueError(f"the API key (--api-key or ${KEY_VARIABLE}) is empty")
    if key is None and not is_loopback(args.host):
        if not args.insecure:
            raise ValueError(
                f"--host {args.host} is reachable from other machines and there is no API key: "
                f"give --api-key KEY (or ${KEY_VARIABLE}), or --insecure to serve it to anyone"
            )
        print(
            f"warning: serving on {args.host} without an API key (--insecure): anyone who can "
            "reach this address can use the model",
            file=sys.stderr,
            flush=True,
        )
    return key


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be in [0, 65535], got {args.port}")
    key = api_key(args)
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
        args.checkpoint, device=args.device, limits=limits, batching=not args.no_batching,
        show_path=args.show_path, int8=args.int8,
    )  # fmt: skip
    info = service.describe()
    print(
        f"serving {info['family']} model {args.checkpoint} ({info['parameters']:,} parameters): "
        f"POST /{info['task']}, POST /attention, GET /health, and the page at GET /"
        f"{' (API key required but for /health and the page)' if key else ''}",
        flush=True,
    )
    uvicorn.run(create_app(service, api_key=key), host=args.host, port=args.port, log_level="info")
    return 0
