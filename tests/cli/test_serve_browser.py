"""The web page of ``formers serve`` in a real headless Chromium (Debian's, driven by Playwright).

A person types a sentence, presses Run, sees the translation and its attention, picks a layer
and a head, hovers a token. Skipped, with the reason, where playwright, /usr/bin/chromium or
the serve extra is missing (``.ci/run`` installs all three).
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="formers serve needs fastapi (pip install formers[serve])")
pytest.importorskip("uvicorn", reason="formers serve needs uvicorn (pip install formers[serve])")
sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package")

from serve_helpers import running  # noqa: E402

from formers.inference.translate import translate  # noqa: E402
from formers.serve import Limits  # noqa: E402
from formers.training.checkpoint import load_model  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium)",
)
TEXT = "a cat sat on the mat"


@pytest.fixture(scope="module")
def server(spm_translator):
    with running(spm_translator, Limits(max_tokens=30)) as url:
        yield url


@pytest.fixture
def page(server):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 900, "height": 800})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("request", lambda r: errors.append(f"request {r.url}") if not
                    r.url.startswith(server) else None)  # fmt: skip
            page.goto(server + "/")
            page.wait_for_selector("body[data-ready='translate']")
            yield page
            assert not errors, errors  # no script error, nothing fetched but the server's JSON
        finally:
            browser.close()


def _drawing(page) -> str:
    return page.inner_html("#drawing")


def test_type_translate_and_explore_the_attention(page, spm_translator, tmp_path):
    assert page.is_hidden("#attention")
    assert "encoder-decoder model" in page.inner_text("#model")
    page.fill("#input", TEXT)
    page.fill("#option-beam", "2")
    page.click("#run")
    page.wait_for_selector("#attention:not([hidden])")

    model, tokenizer, _ = load_model(spm_translator)
    expected = translate(model, tokenizer, [TEXT], beam=2, lenpen=0.6)[0][0].text
    assert page.inner_text("#output") == expected
    assert page.input_value("#view") == "encoder"
    assert page.locator("#drawing line").count() > 0
    start = _drawing(page)

    page.select_option("#view", "cross")
    page.select_option("#layer", "0")
    page.select_option("#head", "2")
    assert page.get_attribute("#drawing", "data-state") == "cross 0 2 lines -"
    chosen = _drawing(page)
    assert chosen != start
    page.hover("#drawing g[data-side='key'][data-index='1']")
    assert page.get_attribute("#drawing", "data-state") == "cross 0 2 lines key1"
    assert _drawing(page) != chosen
    keys = page.eval_on_selector_all(
        "#drawing line", "ls => ls.filter(l => l.style.display !== 'none').map(l => l.dataset.k)"
    )
    assert set(keys) == {"1"}
    page.screenshot(path=str(tmp_path / "serve.png"))
    assert (tmp_path / "serve.png").stat().st_size > 0

    # a second sentence replaces the drawing; the selectors keep working (no stale handlers)
    page.fill("#input", "the lazy dog")
    page.click("#run")
    page.wait_for_function("document.querySelector('#view').value === 'encoder'")
    page.select_option("#mode", "heatmap")
    n = len(tokenizer.encode("the lazy dog"))
    assert page.locator("#drawing rect.cell").count() == n * n


def test_a_refused_request_is_shown(page):
    page.fill("#input", "the cat " * 20)  # more than the 30 tokens allowed
    page.click("#run")
    page.wait_for_selector("#error:not([hidden])")
    assert "413" in page.inner_text("#error") and "the limit is 30" in page.inner_text("#error")
    assert page.is_hidden("#attention")


@pytest.mark.parametrize(
    ("fixture", "task", "text", "shown"),
    [
        ("char_gpt", "generate", "hello wo", r"^hello wo"),
        ("bert_classifier", "classify", "the movie was wonderful", r"^label \d \(probabilities "),
        ("bert_mlm", "fill", "the movie was [MASK]", r"^the movie was \S+\n\[MASK\] 1: "),
        ("bert_body", "embed", "the movie was wonderful", r"^32-dimensional embedding "),
    ],
)
def test_the_page_serves_every_task(request, fixture, task, text, shown):
    """The page adapts to the model's task: it calls that route and draws its self-attention."""
    import re

    with running(request.getfixturevalue(fixture)) as url, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            answers: list[tuple[str, str]] = []
            page.on(
                "response", lambda r: answers.append((r.url, r.headers.get("content-type", "")))
            )
            page.goto(url + "/")
            page.wait_for_selector(f"body[data-ready='{task}']")
            if task == "generate":
                page.fill("#option-max_new_tokens", "8")
            page.evaluate(
                """() => { window.outputChanges = 0;
                   new MutationObserver(() => window.outputChanges++).observe(
                     document.querySelector('#output'), {childList: true, characterData: true,
                                                         subtree: true}); }"""
            )
            page.fill("#input", text)
            page.click("#run")
            page.wait_for_selector("#attention:not([hidden])")
            # generation is streamed (how many pieces the page shows depends on how the network
            # groups them, so the test checks the stream's type); the other answers come at once
            kinds = [kind for path, kind in answers if path.endswith("/" + task)]
            if task == "generate":
                assert kinds == ["text/event-stream; charset=utf-8"]
            else:
                assert kinds == ["application/json"]
                assert page.evaluate("window.outputChanges") == 1
            assert re.search(shown, page.inner_text("#output")), page.inner_text("#output")
            assert page.input_value("#view") == "self"
            assert page.locator("#drawing line").count() > 0
            assert page.is_hidden("#error") and not errors, errors
        finally:
            browser.close()
