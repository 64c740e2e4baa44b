"""One self-contained HTML page to explore a record's attention in any browser, offline.

The page inlines its CSS and JavaScript (``static/attention.css`` and ``static/attention.js``,
read from the package at runtime) and the record as JSON: no CDN, no network, no Jupyter
(bertviz, the popular viewer, needs both). It draws with inline SVG and offers a view selector
(encoder / decoder / cross, or self), layer and head selectors (or the mean of all heads), a
"lines" view (hover a token to keep only its lines, as bertviz's head view) and a heatmap view.

In a notebook a record shows itself: its ``_repr_html_`` is :func:`notebook_html`, the page in an
``<iframe srcdoc>``, so that several pictures in one notebook keep their own element ids and the
page's style does not leak into the notebook's.
"""

from __future__ import annotations

import html
import json
import os
from importlib import resources
from pathlib import Path

from formers.viz.capture import AttentionRecord

_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
{css}
</style>
</head>
<body>
<h1>{title}</h1>
<div class="texts">{texts}</div>
<div class="controls">
  <label>view <select id="view"></select></label>
  <label>layer <select id="layer"></select></label>
  <label>head <select id="head"></select></label>
  <label>drawing <select id="mode">
    <option value="lines">lines</option><option value="heatmap">heatmap</option>
  </select></label>
  <span class="hint">hover a token: where it attends (left), what attends to it (right)</span>
</div>
<svg id="drawing" role="img" aria-label="attention weights"></svg>
<script type="application/json" id="attention-data">{data}</script>
<script>
{js}
</script>
</body>
</html>
"""


def _static(name: str) -> str:
    return resources.files("formers.viz").joinpath("static", name).read_text(encoding="utf-8")


def attention_html(record: AttentionRecord, *, title: str | None = None) -> str:
    """The page of ``record`` as one HTML string (inline CSS, JS and data).

    Args:
        record: from :func:`formers.viz.capture_attention`.
        title: the page's title; default: the family and the source text.

    Returns:
        The complete HTML document.
    """
    title = title or f"formers attention ({record.family})"
    texts = " &nbsp;→&nbsp; ".join(html.escape(t) for t in record.text.values() if t)
    # "</" would end the <script> element early whatever the JSON says; "<\/" is the same JSON
    data = json.dumps(record.to_dict(), ensure_ascii=False, separators=(",", ":"))
    data = data.replace("</", "<\\/")
    return _TEMPLATE.format(
        title=html.escape(title),
        texts=texts,
        css=_static("attention.css"),
        js=_static("attention.js"),
        data=data,
    )


def save_html(
    record: AttentionRecord, path: str | os.PathLike, *, title: str | None = None
) -> Path:
    """Write :func:`attention_html` of ``record`` to ``path`` (UTF-8); return the path."""
    path = Path(path)
    path.write_text(attention_html(record, title=title), encoding="utf-8")
    return path


def notebook_html(record: AttentionRecord, *, height: int = 640) -> str:
    """The page of ``record`` inside an ``<iframe srcdoc>``: what a notebook cell shows.

    Args:
        record: from :func:`formers.viz.capture_attention`.
        height: the frame's height in CSS pixels (the page scrolls inside it).

    Returns:
        One ``<iframe>`` element, the whole page escaped into its ``srcdoc`` attribute.
    """
    page = html.escape(attention_html(record), quote=True)
    return (
        f'<iframe srcdoc="{page}" style="width: 100%; height: {int(height)}px; border: 0" '
        'sandbox="allow-scripts" title="formers attention"></iframe>'
    )
