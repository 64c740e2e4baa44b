"""The web page of ``formers serve``: one HTML document with its CSS and JavaScript inline.

It reuses the attention viewer of :mod:`formers.viz.page` (``attention.js`` and its style) and
adds a form (``serve.js``): the page asks ``/health`` which task the model does, sends the typed
text there, shows the answer, and draws the answer's attention from ``/attention``. It loads
nothing from the network but the server's own JSON endpoints.
"""

from __future__ import annotations

from importlib import resources


def _read(package: str, name: str) -> str:
    return resources.files(package).joinpath("static", name).read_text(encoding="utf-8")


def server_page() -> str:
    """The page as one HTML string."""
    css = _read("formers.viz", "attention.css") + _read("formers.serve", "serve.css")
    template = _read("formers.serve", "serve.html")
    # str.replace, not str.format: the CSS and JS are full of braces
    return (
        template.replace("{css}", css)
        .replace("{attention_js}", _read("formers.viz", "attention.js"))
        .replace("{serve_js}", _read("formers.serve", "serve.js"))
    )
