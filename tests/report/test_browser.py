"""The report in a real browser (headless Chromium, where installed): at a laptop's and a
phone's width the page never scrolls sideways (wide tables scroll in their own box) and every
chart is drawn at a readable size."""

from __future__ import annotations

import json
import shutil
import subprocess
from html import escape
from pathlib import Path

import pytest

from instruct_tune.report import write_report
from tests.report import runs

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")

PROBE = """<script>
var d = document.documentElement, out = {scroll: d.scrollWidth, width: d.clientWidth,
  charts: [].map.call(document.querySelectorAll("svg.chart"), function (s) {
    var r = s.getBoundingClientRect(); return [Math.round(r.width), Math.round(r.height)]; }),
  tables: [].map.call(document.querySelectorAll(".scroll"), function (s) {
    return s.getBoundingClientRect().right <= d.clientWidth + 1; })};
parent.document.body.setAttribute("data-probe", JSON.stringify(out));
</script>"""


def layout(page: Path, width: int, tmp_path: Path) -> dict:
    """Lay the page out `width` CSS px wide (in an iframe: Chrome's headless window is at least
    500 px wide) and return what PROBE measured."""
    doc = page.read_text().replace("</body>", PROBE + "</body>")
    host = tmp_path / f"host{width}.html"
    host.write_text(f'<!doctype html><html><body style="margin:0"><iframe srcdoc="{escape(doc)}" '
                    f'style="width:{width}px;height:900px;border:0"></iframe></body></html>')
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
         f"--user-data-dir={tmp_path / f'profile{width}'}", f"--window-size={max(width, 500)},900",
         "--dump-dom", host.as_uri()], capture_output=True, text=True, timeout=120)
    marker = 'data-probe="'
    assert marker in done.stdout, done.stderr[-2000:]
    raw = done.stdout.split(marker, 1)[1].split('"', 1)[0]
    return json.loads(raw.replace("&quot;", '"'))


@pytest.mark.parametrize("width", [1366, 390])
def test_page_fits_the_screen(tmp_path, width):
    page = write_report(runs.demo_dir(tmp_path / "demo"))
    got = layout(page, width, tmp_path)
    assert got["width"] == width
    assert got["scroll"] <= width, f"the page scrolls sideways at {width}px: {got}"
    assert all(got["tables"]), "a table box sticks out of the page"
    assert len(got["charts"]) == 3
    for w, h in got["charts"]:
        assert 300 <= w <= 600 and h >= 140, (width, got["charts"])
