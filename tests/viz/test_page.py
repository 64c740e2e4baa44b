"""The HTML page: self-contained (no network references) and carrying the record's data."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from formers.viz import attention_html, capture_attention, save_html


@pytest.fixture(scope="module")
def record(transformer, spm):
    return capture_attention(transformer, spm, "the cat sat on the mat", "die katze sitzt")


def _embedded(page: str) -> dict:
    match = re.search(r'<script type="application/json" id="attention-data">(.*?)</script>', page)
    assert match, "the page embeds its data"
    return json.loads(match.group(1))


def test_page_is_self_contained(record):
    page = attention_html(record)
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"<script[^>]*\bsrc=", page)
    assert not re.search(r"<link\b", page)
    assert not re.search(r"@import|url\(", page)
    assert page.startswith("<!DOCTYPE html>") and '<svg id="drawing"' in page


def test_page_embeds_the_data(record, tmp_path):
    path = save_html(record, tmp_path / "a.html")
    data = _embedded(path.read_text(encoding="utf-8"))
    assert data["source"] == record.source and data["target"] == record.target
    assert set(data["views"]) == {"encoder", "decoder", "cross"}
    np.testing.assert_allclose(data["views"]["cross"], record.views["cross"], atol=1e-4)


def test_script_end_in_a_token_cannot_break_the_page(record):
    record.source = [*record.source[:-1], "</script><b>"]
    page = attention_html(record)
    assert page.count("</script>") == 2  # the data's and the code's
    assert _embedded(page)["source"][-1] == "</script><b>"


def test_a_notebook_shows_the_page_in_a_frame(transformer, spm):
    import html

    record = capture_attention(transformer, spm, "a dog runs", "ein hund")
    frame = record._repr_html_()
    match = re.fullmatch(r'<iframe srcdoc="([^"]*)" style="[^"]*" (.*)></iframe>', frame)
    assert match, frame[:200]
    assert html.unescape(match.group(1)) == attention_html(record)  # the whole page, escaped
    assert 'sandbox="allow-scripts"' in match.group(2)  # scripts run, nothing else is allowed
