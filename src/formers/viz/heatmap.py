"""Attention heatmaps with matplotlib: one layer's heads, or every layer and head at once.

matplotlib is an optional dependency (``pip install formers[viz]``), imported on first use with
the non-interactive Agg backend, so that drawing works on machines without a display.
"""

from __future__ import annotations

import math
import os
from typing import Any

from formers.viz.capture import AttentionRecord


def require_matplotlib() -> Any:
    """``matplotlib.pyplot`` on the Agg backend.

    Raises:
        ImportError: matplotlib is not installed; the message says how to install it.
    """
    try:
        import matplotlib
    except ImportError as error:
        raise ImportError(
            "attention heatmaps need matplotlib: pip install 'formers[viz]' (or matplotlib); "
            "the HTML page (an .html output) needs nothing extra"
        ) from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _layer_index(record: AttentionRecord, view: str, layer: int) -> int:
    layers, _ = record.shape(view)
    if not -layers <= layer < layers:
        raise ValueError(
            f"layer {layer} is out of range: the {view!r} attention has {layers} layers "
            f"(0..{layers - 1}, or -1 for the last)"
        )
    return layer % layers


def plot_layer(
    record: AttentionRecord, view: str, layer: int, path: str | os.PathLike, *, dpi: int = 120
) -> None:
    """Draw ``layer``'s heads of ``view`` as a grid of heatmaps and save it to ``path``.

    Each heatmap has the query tokens down the rows and the key tokens across the columns; all
    share one colour scale (0 to 1) and one colour bar.

    Args:
        record: from :func:`formers.viz.capture_attention`.
        view: ``"encoder"``, ``"decoder"``, ``"cross"`` or ``"self"``.
        layer: layer index (negative counts from the last).
        path: image file; its suffix chooses the format (``.png``, ``.svg``, ``.pdf``).
        dpi: resolution of raster formats.
    """
    plt = require_matplotlib()
    index = _layer_index(record, view, layer)
    weights = record.views[view][index]  # (H, q, k)
    queries, keys = record.axes(view)
    heads = weights.shape[0]
    cols = min(heads, 4)
    rows = math.ceil(heads / cols)
    cell = max(2.5, 0.28 * max(len(queries), len(keys)))
    fig, axes = plt.subplots(
        rows, cols, figsize=(cell * cols + 1.2, cell * rows + 0.8), squeeze=False
    )
    image = None
    for h, ax in enumerate(axes.flat):
        if h >= heads:
            ax.axis("off")
            continue
        image = ax.imshow(weights[h], vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
        ax.set_title(f"head {h}", fontsize=9)
        ax.set_xticks(range(len(keys)), keys, rotation=90, fontsize=7)
        # the rows are the same queries in every panel: label them once, at the left of a row,
        # where labels like "<s>" cannot run into the panel before
        ax.set_yticks(range(len(queries)), queries if h % cols == 0 else [], fontsize=7)
    fig.suptitle(f"{view} attention, layer {index}", fontsize=11)
    fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, label="attention weight")
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)


def plot_overview(
    record: AttentionRecord, view: str, path: str | os.PathLike, *, dpi: int = 100
) -> None:
    """Draw every layer (rows) by every head (columns) of ``view`` as small multiples.

    The tokens are left out (too small to read); :func:`plot_layer` labels one layer.

    Args:
        record: from :func:`formers.viz.capture_attention`.
        view: ``"encoder"``, ``"decoder"``, ``"cross"`` or ``"self"``.
        path: image file; its suffix chooses the format.
        dpi: resolution of raster formats.
    """
    plt = require_matplotlib()
    layers, heads = record.shape(view)
    weights = record.views[view]  # (L, H, q, k)
    fig, axes = plt.subplots(
        layers, heads, figsize=(1.6 * heads + 1.2, 1.6 * layers + 0.6), squeeze=False
    )
    image = None
    for layer in range(layers):
        for head in range(heads):
            ax = axes[layer][head]
            image = ax.imshow(weights[layer, head], vmin=0.0, vmax=1.0, cmap="viridis")
            ax.set_xticks([])
            ax.set_yticks([])
            if layer == 0:
                ax.set_title(f"head {head}", fontsize=8)
            if head == 0:
                ax.set_ylabel(f"layer {layer}", fontsize=8)
    fig.suptitle(f"{view} attention: layers x heads", fontsize=11)
    fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, label="attention weight")
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
