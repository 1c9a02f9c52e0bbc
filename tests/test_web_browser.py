"""The collage editor in a real browser: Playwright drives Debian's headless Chromium against a uvicorn server
in a thread. Open the page, select a source, paste a region by dragging on the canvas, and see the output
change; a screenshot goes to the test's tmp_path.

Environment: LATENTCOMP_WEB_MODEL (default `tiny`) picks the served model, LATENTCOMP_WEB_SCREENSHOT=PATH
also writes the screenshot there (docs/web-screenshot.png is made this way with the toyfaces model).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} not installed (apt-get install chromium)"
)


@pytest.fixture(scope="module")
def server():
    from latentcomp.web import create_app, load_pipeline
    from latentcomp.web.server import start_in_thread

    pipe = load_pipeline(os.environ.get("LATENTCOMP_WEB_MODEL", "tiny"))
    with start_in_thread(create_app(pipe)) as srv:
        yield srv


def _drag(page, box, a, b, steps=6):
    """Drag with the mouse from fraction a=(fx, fy) to b of the element's box."""
    page.mouse.move(box["x"] + a[0] * box["width"], box["y"] + a[1] * box["height"])
    page.mouse.down()
    page.mouse.move(box["x"] + b[0] * box["width"], box["y"] + b[1] * box["height"], steps=steps)
    page.mouse.up()


OUTPUT_SRC = "() => document.getElementById('output').getAttribute('src') || ''"


def test_paste_regions_and_see_the_output_change(server, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    expect = sync_api.expect
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 760})
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: m.type == "error" and errors.append(m.text))
            page.goto(server.url)
            page.wait_for_selector("body[data-ready='true']", timeout=60_000)
            sources = page.locator("#palette .source")
            assert sources.count() >= 2
            assert page.evaluate(OUTPUT_SRC) == ""  # nothing known yet: no output

            # select the first source, paste a rectangle: an output appears
            sources.nth(0).click()
            assert sources.nth(0).get_attribute("aria-pressed") == "true"
            page.check("#tool-rect")
            canvas = page.locator("#collage")
            box = canvas.bounding_box()
            _drag(page, box, (0.02, 0.02), (0.98, 0.5))  # the top half of source 0
            output = page.locator("#output")
            expect(output).to_have_attribute("src", re.compile(r"^data:image/png;base64,"), timeout=30_000)
            expect(output).not_to_have_class(re.compile("stale"), timeout=30_000)
            first = page.evaluate(OUTPUT_SRC)

            # another source, another region (brush this time): the output changes
            sources.nth(1).click()
            page.check("#tool-brush")
            _drag(page, box, (0.2, 0.7), (0.8, 0.75), steps=10)
            expect(output).not_to_have_attribute("src", first, timeout=30_000)
            expect(output).not_to_have_class(re.compile("stale"), timeout=30_000)
            second = page.evaluate(OUTPUT_SRC)
            assert second.startswith("data:image/png;base64,") and second != first

            # the collage really holds known and unknown pixels
            known = page.evaluate(
                "() => { const c = document.getElementById('collage');"
                " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
                " let k = 0; for (let i = 3; i < d.length; i += 4) k += d[i] > 0;"
                " return k / (d.length / 4); }"
            )
            assert 0.2 < known < 0.9

            # undo brings the first output back (same collage -> same image)
            page.click("#undo")
            expect(output).to_have_attribute("src", first, timeout=30_000)

            # an upload becomes a new, selected source
            n = sources.count()
            upload = tmp_path / "upload.png"
            pixels = np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(upload)
            page.set_input_files("#upload-input", str(upload))
            expect(sources).to_have_count(n + 1, timeout=30_000)
            expect(sources.nth(n)).to_have_attribute("aria-pressed", "true")

            # the bottom half of another source under the top half of the first: the output follows again
            sources.nth(3).click()
            page.check("#tool-rect")
            _drag(page, box, (0.02, 0.55), (0.98, 0.98))
            expect(output).not_to_have_attribute("src", first, timeout=30_000)
            expect(output).not_to_have_class(re.compile("stale"), timeout=30_000)

            # several completions
            page.click("#complete")
            expect(page.locator("#completions img")).to_have_count(4, timeout=30_000)

            shot = tmp_path / "editor.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            target = os.environ.get("LATENTCOMP_WEB_SCREENSHOT")
            if target:
                shutil.copyfile(shot, target)
            assert not errors, errors
        finally:
            browser.close()
