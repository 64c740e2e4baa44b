"""Attention pictures: capture a model's attention, draw heatmaps, write an interactive page.

>>> record = capture_attention(model, tokenizer, "the cat sat")   # doctest: +SKIP
>>> save_html(record, "attention.html")                            # doctest: +SKIP
>>> record                     # in a notebook: the interactive page, inline  # doctest: +SKIP

The heatmaps need matplotlib (``pip install formers[viz]``); the page needs nothing but a browser.
"""

from formers.viz.capture import AttentionRecord, capture_attention
from formers.viz.heatmap import plot_layer, plot_overview
from formers.viz.page import attention_html, notebook_html, save_html

__all__ = [
    "AttentionRecord",
    "attention_html",
    "capture_attention",
    "notebook_html",
    "plot_layer",
    "plot_overview",
    "save_html",
]
