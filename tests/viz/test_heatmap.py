"""Heatmap PNGs: one layer's heads and the all-layers overview are written and are PNGs."""

from __future__ import annotations

import sys

import pytest

from formers.viz import capture_attention, plot_layer, plot_overview

pytest.importorskip("matplotlib")

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def record(transformer, spm):
    return capture_attention(transformer, spm, "the cat sat on the mat", "die katze sitzt")


@pytest.mark.parametrize("view", ["encoder", "decoder", "cross"])
def test_plot_layer(record, view, tmp_path):
    path = tmp_path / f"{view}.png"
    plot_layer(record, view, -1, path)
    assert path.read_bytes()[:8] == PNG and path.stat().st_size > 1000


def test_plot_overview(record, tmp_path):
    path = tmp_path / "overview.png"
    plot_overview(record, "cross", path)
    assert path.read_bytes()[:8] == PNG and path.stat().st_size > 1000


def test_bad_layer_and_view(record, tmp_path):
    with pytest.raises(ValueError, match="2 layers"):
        plot_layer(record, "cross", 2, tmp_path / "x.png")
    with pytest.raises(ValueError, match="no 'self' attention"):
        plot_layer(record, "self", 0, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_missing_matplotlib_is_a_clear_error(record, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    with pytest.raises(ImportError, match=r"pip install 'formers\[viz\]'"):
        plot_layer(record, "cross", 0, tmp_path / "x.png")
