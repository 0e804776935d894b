"""The levers section: `demo --levers` (report.json's "levers") as a table, its figure and the
sentence per lever. Every number points into report.json; the figure is inlined (data: URI),
so the page stays one file. "" for any run without levers."""

from __future__ import annotations

import base64
from html import escape

from .cells import num, ptr
from .sources import RunData

SPLITS = (("heldout_inputs", "held-out inputs"), ("heldout_phrasings", "held-out phrasings"))


def _row(i: int, s: dict) -> str:
    def at(*keys) -> str:
        return ptr("report.json", "levers", "settings", i, *keys)

    cells = [num(s["rows"] or None, at("rows"), "int"), num(s["epochs"] or None, at("epochs"), "len")]
    for split, _ in SPLITS:
        m = s.get("eval", {}).get(split, {})
        cells += [num(m.get(k), at("eval", split, k)) for k in ("exact_match", "stop_rate")]
    cells.append(num(s.get("left_out_exact_match"), at("left_out_exact_match")))
    return f"<tr><th>{escape(s['label'])}</th>{''.join(cells)}</tr>"


def levers_section(data: RunData) -> str:
    lv = (data.demo or {}).get("levers")
    if not isinstance(lv, dict) or not lv.get("settings"):
        return ""
    settings = lv["settings"]
    left_out = next((s["info"].get("left_out", []) for s in settings if s.get("lever") == "tasks"), [])
    head = ('<thead><tr><th rowspan="2">setting</th><th rowspan="2" class="num">rows</th>'
            '<th rowspan="2" class="num">epochs</th>'
            + "".join(f'<th colspan="2" class="group">{t}</th>' for _, t in SPLITS)
            + f'<th rowspan="2" class="num">exact match, the {len(left_out)} types the task '
            "setting leaves out</th></tr><tr>"
            + '<th class="num">exact match</th><th class="num">stop rate</th>' * len(SPLITS)
            + "</tr></thead>")
    body = "".join(_row(i, s) for i, s in enumerate(settings))
    b = lv.get("budget", {})
    how = (f"Every setting tuned from the same base model for {b.get('steps')} optimizer steps of "
           f"{b.get('rows_per_step')} rows (lr {b.get('lr')}, {b.get('schedule')}, seed "
           f"{b.get('seed')}); one lever changed against the baseline; all scored on the same "
           "held-out sets. A smaller set is repeated more often (epochs).")
    png = data.root / lv["figure"] if lv.get("figure") else None
    img = (f'<figure><img alt="exact match (bars) and stop rate (circles) per lever" '
           f'style="max-width:100%;height:auto" src="data:image/png;base64,'
           f'{base64.b64encode(png.read_bytes()).decode()}"></figure>'
           if png is not None and png.is_file() else "")
    said = "".join(f"<li>{escape(t)}</li>" for t in (lv.get("sentences") or {}).values())
    return (f'<section id="levers"><h2>The levers, measured</h2><p class="how">{escape(how)}</p>'
            f'<div class="scroll"><table class="metrics">{head}<tbody>{body}</tbody></table></div>'
            f'{img}<ul class="findings">{said}</ul><p class="src">from report.json (levers), '
            f"{escape(str(lv.get('figure', '')))}</p></section>")


__all__ = ["levers_section"]
