"""``formers serve --api-key``: over real HTTP, every route but GET /health and the page needs
``Authorization: Bearer KEY``; the page asks for the key in a real browser; a host other than
the loopback needs a key (or ``--insecure``, with a warning); /health names the checkpoint, not
its path on the server."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="formers serve needs fastapi (pip install formers[serve])")
pytest.importorskip("uvicorn", reason="formers serve needs uvicorn (pip install formers[serve])")
httpx = pytest.importorskip("httpx", reason="the HTTP tests need httpx (the dev extra)")

from serve_helpers import running  # noqa: E402

from formers.cli.main import main  # noqa: E402
from formers.cli.serve import api_key, is_loopback  # noqa: E402
from formers.serve import Limits, ModelService  # noqa: E402

KEY = "correct horse battery staple"
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def server(spm_translator):
    with running(spm_translator, Limits(max_tokens=30), api_key=KEY) as url:
        yield url


def _post(url, path, body, key=None, scheme="Bearer"):
    headers = {} if key is None else {"Authorization": f"{scheme} {key}"}
    return httpx.post(url + path, json=body, headers=headers, timeout=60)


def test_every_route_but_health_and_the_page_needs_the_key(server):
    assert httpx.get(server + "/health").json()["status"] == "ok"
    assert httpx.get(server + "/").status_code == 200  # static HTML and JavaScript, no data
    body = {"text": "a cat sat on the mat"}
    for path, request in (("/translate", body), ("/attention", body)):
        missing = _post(server, path, request)
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
        assert "needs its API key" in missing.json()["detail"]
        wrongs = [_post(server, path, request, KEY + "x"), _post(server, path, request, KEY[:-1]),
                  _post(server, path, request, KEY, scheme="Basic")]  # fmt: skip
        for wrong in wrongs:
            assert wrong.status_code == 401 and "wrong API key" in wrong.json()["detail"]
        assert _post(server, path, request, KEY).status_code == 200
    # the key is checked before anything else: no hint about the body to a stranger
    assert httpx.post(server + "/translate", content=b"x", timeout=60).status_code == 401
    assert httpx.get(server + "/openapi.json").status_code == 401


def test_health_names_the_checkpoint_not_its_path(spm_translator):
    assert ModelService.load(spm_translator).describe()["checkpoint"] == spm_translator.name
    shown = ModelService.load(spm_translator, show_path=True).describe()["checkpoint"]
    assert shown == str(spm_translator.resolve())


def _args(host="127.0.0.1", key=None, insecure=False):
    return argparse.Namespace(host=host, api_key=key, insecure=insecure)


def test_a_host_others_can_reach_needs_a_key(monkeypatch, capsys, spm_translator):
    monkeypatch.delenv("FORMERS_API_KEY", raising=False)
    assert [is_loopback(h) for h in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost")] == [
        True] * 5  # fmt: skip
    assert not any(is_loopback(h) for h in ("0.0.0.0", "192.168.1.5", "::", "example.org"))
    assert api_key(_args()) is None  # the loopback needs no key
    with pytest.raises(ValueError, match="reachable from other machines and there is no API key"):
        api_key(_args("0.0.0.0"))
    assert api_key(_args("0.0.0.0", insecure=True)) is None
    assert "warning: serving on 0.0.0.0 without an API key" in capsys.readouterr().err
    assert api_key(_args("0.0.0.0", key="k")) == "k"
    monkeypatch.setenv("FORMERS_API_KEY", "from-env")
    assert api_key(_args("0.0.0.0")) == "from-env"
    monkeypatch.setenv("FORMERS_API_KEY", " ")
    with pytest.raises(ValueError, match="API key .* is empty"):
        api_key(_args())
    monkeypatch.delenv("FORMERS_API_KEY")
    command = ["serve", "--checkpoint", str(spm_translator), "--host", "0.0.0.0"]
    assert main(command) == 2  # refused before the model is loaded or a port is bound
    assert "--api-key KEY" in capsys.readouterr().err


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"needs Debian's chromium at {CHROMIUM}")
def test_the_page_asks_for_the_key_and_sends_it(server):
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page()
            asked = []
            page.on("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept(KEY)))
            page.goto(server + "/")
            page.wait_for_selector("body[data-ready='translate']")
            page.fill("#input", "a cat sat on the mat")
            page.click("#run")
            page.wait_for_selector("#attention:not([hidden])")
            assert asked == ["This server needs its API key:"]  # asked once, then kept
            assert page.inner_text("#output") and page.is_hidden("#error")
        finally:
            browser.close()
