"""Make the README's attention pictures from a ``formers demo`` checkpoint.

    OMP_NUM_THREADS=1 formers demo --save /tmp/demo_ckpt --threads 1
    python docs/make_images.py --checkpoint /tmp/demo_ckpt

writes ``docs/attention_heatmap.png`` (``formers attention ... --out *.png``: the last layer's
cross attention, one heatmap a head) and ``docs/attention_page.png`` (a screenshot of the page
of ``formers attention ... --out *.html`` in headless Chromium, driven by Playwright: the cross
view of the last layer with one output token hovered, so that only its lines are drawn).

With ``--serve-checkpoint DIR`` (the README uses the raw-text Multi30k model,
``runs/multi30k_en_de_cpu_raw/average``) it also writes ``docs/serve_page.png``: the page of
``formers serve`` after translating :data:`SENTENCE`, cross view of layer 2, one German token
hovered.

Needs matplotlib (``formers[viz]``), the playwright package and Debian's ``/usr/bin/chromium``
(and ``formers[serve]`` for the server's page).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from formers.cli.main import main as formers

DOCS = Path(__file__).resolve().parent
SRC = "3 1 4 1 5 9 2 6"
SENTENCE = "A man in a red shirt is riding a bike down the street."
CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 900, "height": 600}
SCALE = 2  # pixels per CSS pixel: sharp on high-density screens
MARGIN = 16  # CSS pixels kept around the page's content


def _content(page: Any) -> dict[str, float]:
    """The part of the viewport the page draws on, plus a margin (the rest is blank)."""
    right, bottom = page.evaluate(
        """() => {
            // text and drawn things, not blocks (a paragraph's box spans the whole width)
            const boxes = [...document.querySelectorAll("select, svg *")]
                .map((e) => e.getBoundingClientRect());
            const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
            const range = document.createRange();
            while (walk.nextNode()) {
                range.selectNodeContents(walk.currentNode);
                boxes.push(range.getBoundingClientRect());
            }
            return boxes.filter((b) => b.width && b.height)
                .reduce(([r, b], box) => [Math.max(r, box.right), Math.max(b, box.bottom)], [0, 0]);
        }"""
    )
    width = min(right + MARGIN, VIEWPORT["width"])
    return {"x": 0, "y": 0, "width": width, "height": min(bottom + MARGIN, VIEWPORT["height"])}


def heatmap(checkpoint: str, out: Path) -> None:
    """``formers attention --out *.png``: cross attention, last layer, one heatmap a head."""
    argv = ["attention", "--checkpoint", checkpoint, "--src", SRC, "--out", str(out)]
    if formers(argv) != 0:
        raise SystemExit(f"formers attention failed for {out}")


def page_screenshot(checkpoint: str, out: Path, hover: int) -> None:
    """Screenshot of the interactive page: cross view, last layer, query ``hover`` hovered.

    Args:
        checkpoint: the demo's checkpoint directory.
        out: the PNG to write.
        hover: index of the decoder token to hover (0 is ``<s>``).
    """
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        html = Path(tmp) / "attention.html"
        argv = ["attention", "--checkpoint", checkpoint, "--src", SRC, "--out", str(html)]
        if formers(argv) != 0:
            raise SystemExit("formers attention failed for the page")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                context = browser.new_context(
                    offline=True, viewport=VIEWPORT, device_scale_factor=SCALE
                )
                page = context.new_page()
                page.goto(html.as_uri())
                page.select_option("#view", "cross")
                last = page.eval_on_selector_all("#layer option", "os => os.length") - 1
                page.select_option("#layer", str(last))
                page.select_option("#head", "all")
                page.select_option("#mode", "lines")
                page.hover(f"#drawing g.token[data-side='query'][data-index='{hover}']")
                state = page.get_attribute("#drawing", "data-state")
                if state != f"cross {last} all lines query{hover}":
                    raise SystemExit(f"the page is not in the expected state: {state!r}")
                page.screenshot(path=str(out), clip=_content(page))
            finally:
                browser.close()


def serve_screenshot(checkpoint: str, out: Path, layer: int = 2, hover: int = 4) -> None:
    """Screenshot of the page of ``formers serve`` after translating :data:`SENTENCE`."""
    import threading
    import time

    import uvicorn
    from playwright.sync_api import sync_playwright

    from formers.serve import ModelService, create_app

    app = create_app(ModelService.load(checkpoint))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}/"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                page = browser.new_page(viewport={"width": 900, "height": 760})
                page.goto(url)
                page.wait_for_selector("body[data-ready='translate']")
                page.fill("#input", SENTENCE)
                page.fill("#option-beam", "5")
                page.fill("#option-lenpen", "1")
                page.click("#run")
                page.wait_for_selector("#attention:not([hidden])")
                page.select_option("#view", "cross")
                page.select_option("#layer", str(layer))
                page.hover(f"#drawing g.token[data-side='query'][data-index='{hover}']")
                page.screenshot(path=str(out), full_page=True)
            finally:
                browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="a `formers demo --save` directory")
    parser.add_argument("--out", default=str(DOCS), help="folder for the images (docs/)")
    parser.add_argument(
        "--hover", type=int, default=3, help="decoder token to hover on the page (0 is <s>)"
    )
    parser.add_argument(
        "--serve-checkpoint", metavar="DIR", help="also screenshot formers serve's page on DIR"
    )
    args = parser.parse_args()
    out = Path(args.out)
    heatmap(args.checkpoint, out / "attention_heatmap.png")
    page_screenshot(args.checkpoint, out / "attention_page.png", args.hover)
    names = ["attention_heatmap.png", "attention_page.png"]
    if args.serve_checkpoint:
        serve_screenshot(args.serve_checkpoint, out / "serve_page.png")
        names.append("serve_page.png")
    for name in names:
        print(f"{out / name}: {(out / name).stat().st_size / 1024:.0f} KB")


if __name__ == "__main__":
    main()
