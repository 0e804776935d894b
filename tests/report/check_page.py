"""Read a report page back: every sourced number against its file, the curves against
metrics.jsonl, and what must (not) be on a self-contained page. Shared by the report tests."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import yaml

NUMERIC = re.compile(r"^[-+]?[\d,]+(\.\d+)?%?$")


class Page(HTMLParser):
    """Elements with data-src, polylines with the chart's geometry, text outside svg/pre that
    looks like a number, section ids, and every tag name."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.sourced: list[tuple[str, str, str]] = []  # (data-src, data-fmt, text)
        self.lines: list[tuple[dict, dict]] = []  # (svg attrs, polyline attrs)
        self.bare_numbers: list[str] = []
        self.ids: list[str] = []
        self.tags: set[str] = set()
        self.classes: list[str] = []
        self._stack: list[tuple[str, dict]] = []
        self._text: list[list[str]] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.add(tag)
        if "id" in a:
            self.ids.append(a["id"])
        self.classes += (a.get("class") or "").split()
        if tag == "polyline":
            svg = next(attrs for t, attrs in reversed(self._stack) if t == "svg")
            self.lines.append((svg, a))
        if tag in ("br", "meta", "line", "polyline", "circle", "i"):
            return  # void elements (or never holding text we check)
        self._stack.append((tag, a))
        self._text.append([])

    def handle_endtag(self, tag):
        if not self._stack or tag in ("br", "meta", "line", "polyline", "circle", "i"):
            return
        t, a = self._stack.pop()
        text = "".join(self._text.pop()).strip()
        if self._text:
            self._text[-1].append(text)
        inside = {x for x, _ in self._stack}
        if "data-src" in a and "#" in a["data-src"]:
            self.sourced.append((a["data-src"], a.get("data-fmt", ""), text))
        elif t in ("td", "dd", "span", "div") and NUMERIC.match(text) and not inside & {"svg", "pre"}:
            self.bare_numbers.append(text)

    def handle_data(self, data):
        if self._text:
            self._text[-1].append(data)


def resolve(root: Path, src: str):
    """The value a data-src points at: FILE#/json/pointer (metrics.jsonl: records by index)."""
    file, pointer = src.split("#", 1)
    path = root / file
    if file.endswith(".jsonl"):
        value = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    elif file.endswith(".yaml"):
        value = yaml.safe_load(path.read_text())
    else:
        value = json.loads(path.read_text())
    for part in pointer.lstrip("/").split("/"):
        key = part.replace("~1", "/").replace("~0", "~")
        value = value[int(key)] if isinstance(value, list) else value[key]
    return value


def shown_equals(value, fmt: str, text: str) -> bool:
    """The page's text is the value, rounded as shown (a number to its shown decimals)."""
    if fmt == "raw":
        return text == str(value)
    if fmt == "bool":
        return text == ("yes" if value else "no")
    number = float(text.replace(",", "").rstrip("%"))
    scale = 100 if text.endswith("%") else 1
    decimals = len(text.rstrip("%").split(".")[1]) if "." in text else 0
    return abs(number - value * scale) <= 0.5 * 10 ** -decimals + 1e-9


def check_numbers(root: Path, page: Page) -> int:
    """Assert every sourced number equals its file's value; return how many were checked."""
    assert page.sourced, "no sourced numbers on the page"
    for src, fmt, text in page.sourced:
        value = resolve(root, src)
        assert shown_equals(value, fmt, text), (src, value, text)
    assert not page.bare_numbers, f"numbers without a source: {page.bare_numbers[:10]}"
    return len(page.sourced)


def chart_points(svg: dict, line: dict) -> list[tuple[float, float]]:
    """A polyline's points turned back into (step, value) with the svg's axes."""
    x0, x1, y0, y1 = (float(svg[k]) for k in ("data-x0", "data-x1", "data-y0", "data-y1"))
    left, top, width, height = map(float, svg["data-box"].split())
    out = []
    for pair in line["points"].split():
        px, py = map(float, pair.split(","))
        out.append((x0 + (px - left) / width * (x1 - x0), y0 + (1 - (py - top) / height) * (y1 - y0)))
    return out


def check_curves(root: Path, page: Page, metrics_file: str) -> set[str]:
    """Each plotted series equals metrics.jsonl's (step, value) pairs of its key (within the
    0.01 px the coordinates are written with); returns the keys plotted."""
    records = [json.loads(x) for x in (root / metrics_file).read_text().splitlines() if x.strip()]
    keys = set()
    for svg, line in page.lines:
        key = line["data-key"]
        keys.add(key)
        want = [(r["step"], r[key]) for r in records if isinstance(r.get(key), int | float)]
        got = chart_points(svg, line)
        _, _, width, height = map(float, svg["data-box"].split())
        # coordinates have 2 decimals: at most 0.005 px off, in the axis's units
        x_tol = 0.0051 * (float(svg["data-x1"]) - float(svg["data-x0"])) / width
        y_tol = 0.0051 * (float(svg["data-y1"]) - float(svg["data-y0"])) / height
        assert len(got) == len(want), key
        for (gx, gy), (wx, wy) in zip(got, want, strict=True):
            assert abs(gx - wx) <= x_tol and abs(gy - wy) <= y_tol, (key, (gx, gy), (wx, wy))
    return keys


def check_self_contained(html: str) -> None:
    assert "<script" not in html.lower() and "<link" not in html.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "url(" not in html and "@import" not in html
