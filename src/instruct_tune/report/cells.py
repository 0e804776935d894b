"""Numbers on the page, each tied to where it came from.

Every number is written by `num`, which records its source as `data-src="FILE#/json/pointer"`
(RFC 6901; metrics.jsonl records are indexed by their position among the file's records), so
the page can be checked against its files, and a reader can see where a number came from (hover).
"""

from __future__ import annotations

from html import escape

# How a value is shown: rates as %, lengths with one decimal, losses with four, counts as ints.
FORMATS = {
    "pct": lambda v: f"{v * 100:.1f}%",
    "dpct": lambda v: f"{v * 100:+.1f}%",
    "len": lambda v: f"{v:.1f}",
    "dlen": lambda v: f"{v:+.1f}",
    "loss": lambda v: f"{v:.4f}",
    "int": lambda v: f"{int(v):,}",
    "sec": lambda v: f"{v:.1f}",
    "raw": lambda v: str(v),
    "bool": lambda v: "yes" if v else "no",
}


def ptr(file: str, *keys) -> str:
    """'eval/a.json#/base/by_task/qa/stop_rate'"""
    return file + "#/" + "/".join(str(k).replace("~", "~0").replace("/", "~1") for k in keys)


def num(value, src: str, fmt: str = "pct", tag: str = "td", better: int = 0) -> str:
    """One number in a `tag` element; `better` +1/-1 colours a difference green when it is good."""
    if value is None:
        return f'<{tag} class="num na">–</{tag}>'
    shown = value
    if fmt in ("dpct", "dlen") and FORMATS[fmt](value).lstrip("+-").strip("0.%") == "":
        shown = 0.0  # -0.0004 would read "-0.0%" in red: a difference that rounds to none is none
    text = FORMATS[fmt](shown)
    cls = "num"
    if better and shown and fmt in ("dpct", "dlen"):
        cls += " good" if better * shown > 0 else " bad"
    return (f'<{tag} class="{cls}" data-src="{escape(src)}" data-fmt="{fmt}" '
            f'title="{escape(src)}">{escape(text)}</{tag}>')


def text(value: str, tag: str = "td", cls: str = "") -> str:
    c = f' class="{cls}"' if cls else ""
    return f"<{tag}{c}>{escape(str(value))}</{tag}>"


__all__ = ["FORMATS", "num", "ptr", "text"]
