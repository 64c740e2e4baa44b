"""The HTML page in a real headless Chromium (Debian's, driven by Playwright), offline.

Skipped, with the reason, where the playwright package or /usr/bin/chromium is missing
(``.ci/run`` installs both).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from formers.viz import capture_attention, save_html

CHROMIUM = Path("/usr/bin/chromium")
SRC, TGT = "the cat sat on the mat", "die katze sitzt"

sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium)",
)


@pytest.fixture(scope="module")
def page_file(tmp_path_factory, transformer, spm) -> Path:
    record = capture_attention(transformer, spm, SRC, TGT)
    return save_html(record, tmp_path_factory.mktemp("page") / "attention.html")


@pytest.fixture
def page(page_file):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            context = browser.new_context(offline=True, viewport={"width": 900, "height": 700})
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("request", lambda r: errors.append(f"request {r.url}") if not
                    r.url.startswith("file://") else None)  # fmt: skip
            page.goto(page_file.as_uri())
            yield page
            assert not errors, errors
        finally:
            browser.close()


def _drawing(page) -> str:
    return page.inner_html("#drawing")


def _visible_lines(page) -> int:
    return page.eval_on_selector_all(
        "#drawing line", "ls => ls.filter(l => l.style.display !== 'none').length"
    )


def test_select_layer_head_and_hover(page, tmp_path):
    assert page.input_value("#view") == "encoder"
    assert page.input_value("#layer") == "1"  # the last layer first
    lines = page.locator("#drawing line").count()
    assert lines > 0
    start = _drawing(page)

    page.select_option("#view", "cross")
    page.select_option("#layer", "0")
    page.select_option("#head", "1")
    assert page.get_attribute("#drawing", "data-state") == "cross 0 1 lines -"
    chosen = _drawing(page)
    assert chosen != start

    before = page.screenshot()
    page.hover("#drawing g[data-side='query'][data-index='1']")
    assert page.get_attribute("#drawing", "data-state") == "cross 0 1 lines query1"
    hovered = _drawing(page)
    assert hovered != chosen
    # only the hovered token's lines remain, and it is highlighted
    qs = page.eval_on_selector_all(
        "#drawing line", "ls => ls.filter(l => l.style.display !== 'none').map(l => l.dataset.q)"
    )
    assert set(qs) == {"1"} and _visible_lines(page) == len(qs)
    assert page.locator("#drawing text.active").count() == 1
    after = page.screenshot(path=str(tmp_path / "hover.png"))
    assert after != before and (tmp_path / "hover.png").stat().st_size > 0

    page.mouse.move(1, 1)  # leave the token: every line is back
    assert page.get_attribute("#drawing", "data-state") == "cross 0 1 lines -"
    assert _visible_lines(page) == page.locator("#drawing line").count() > len(qs)


def test_heatmap_view(page, tmp_path, spm):
    page.select_option("#mode", "heatmap")
    page.select_option("#view", "decoder")
    cells = page.locator("#drawing rect.cell")
    t = len(spm.encode(TGT)) + 1  # the decoder reads BOS + the target
    assert cells.count() == t * t
    plain = _drawing(page)
    page.hover("#drawing g[data-side='key'][data-index='0']")
    assert _drawing(page) != plain
    dimmed = page.eval_on_selector_all(
        "#drawing rect.cell",
        "cs => cs.filter(c => c.dataset.k !== '0' && "
        "Number(c.getAttribute('fill-opacity')) > 0.25 * Number(c.dataset.w) + 1e-3).length",
    )
    assert dimmed == 0  # every cell outside the hovered column is dimmed
    page.screenshot(path=str(tmp_path / "heatmap.png"))
    assert (tmp_path / "heatmap.png").stat().st_size > 0


def test_two_pictures_in_one_notebook_stay_apart(tmp_path, transformer, spm):
    """Two records shown by a notebook (their _repr_html_ frames) draw and react independently."""
    first = capture_attention(transformer, spm, SRC, TGT)._repr_html_()
    second = capture_attention(transformer, spm, "a dog runs in the park", "ein hund")._repr_html_()
    notebook = tmp_path / "notebook.html"
    notebook.write_text(f"<!DOCTYPE html><html><body>{first}{second}</body></html>", "utf-8")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_context(offline=True).new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(notebook.as_uri())
            frames = [page.frame_locator("iframe").nth(i) for i in range(2)]
            for frame in frames:
                frame.locator("#drawing line").first.wait_for(state="attached")
            before = [f.locator("#drawing").get_attribute("data-state") for f in frames]
            assert before == ["encoder 1 all lines -"] * 2
            frames[0].locator("#view").select_option("cross")
            after = [f.locator("#drawing").get_attribute("data-state") for f in frames]
            assert after == ["cross 1 all lines -", "encoder 1 all lines -"]
            texts = [f.locator(".texts").inner_text() for f in frames]
            assert "the cat" in texts[0] and "a dog" in texts[1]
            assert not errors, errors
        finally:
            browser.close()
