"""The page: one self-contained HTML file (inline style and SVG, no script, no network), laid out
for a laptop and narrowing to one column on a phone. `write_report` writes RUN_DIR/report.html.
"""

from __future__ import annotations

import os
from datetime import datetime
from html import escape
from pathlib import Path

from .. import __version__
from ..errors import ConfigError
from .levers import levers_section
from .preference import preference_section
from .sections import audit_section, config_section, curves_section, timings_section
from .sources import RunData, load_run
from .tables import evals_section, glance_section, samples_section

GENERATOR = "instruct-tune report"  # in every page we write: what `report` may replace

STYLE = """
:root{--fg:#1d2430;--muted:#5b6675;--line:#e3e7ee;--bg:#f5f6f8;--card:#fff;--good:#0a7a3d;
--bad:#b42318;--accent:#1f6feb}
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);
background:var(--bg);-webkit-text-size-adjust:100%}
main{max-width:1120px;margin:0 auto;padding:16px}
header h1{font-size:1.35rem;margin:.3rem 0 0}
header p{margin:.2rem 0;color:var(--muted);overflow-wrap:anywhere}
nav{display:flex;flex-wrap:wrap;gap:6px 14px;margin:.5rem 0;font-size:.9rem}
nav a{color:var(--accent);text-decoration:none}
section{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:14px 16px;
margin:14px 0}
h2{font-size:1.1rem;margin:0 0 .6rem}
h3{font-size:.98rem;margin:1.1rem 0 .3rem}
.src,.how{color:var(--muted);font-size:.82rem;margin:.4rem 0;overflow-wrap:anywhere}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch}
table{border-collapse:collapse;font-size:.9rem;min-width:100%}
table.metrics{min-width:min(100%,620px)}
th,td{padding:5px 8px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
thead th{font-weight:600;color:var(--muted);font-size:.82rem;border-bottom:2px solid var(--line)}
th.group,.gs{border-left:1px solid var(--line)}th.group{text-align:center}
tbody th{font-weight:500}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.good,span.good{color:var(--good);font-weight:600}td.bad,span.bad{color:var(--bad);font-weight:600}
.na{color:var(--muted)}
table.tasks tbody th,table.tasks thead tr:first-child th:first-child{position:sticky;left:0;
background:var(--card)}
dl.kv{display:grid;grid-template-columns:repeat(auto-fill,minmax(210px,1fr));gap:8px 18px;
margin:0}
dl.kv div{min-width:0}dl.kv dt{color:var(--muted);font-size:.8rem}
dl.kv dd{margin:0;text-align:left;white-space:normal;overflow-wrap:anywhere}
dl.kv div.wide{grid-column:1/-1}
.glance{display:grid;grid-template-columns:repeat(auto-fit,minmax(240px,1fr));gap:10px}
.card{border:1px solid var(--line);border-radius:8px;padding:8px 12px}
.card .k{color:var(--muted);font-size:.82rem}
.card .v{display:flex;flex-wrap:wrap;gap:2px 16px;font-size:1.15rem;font-weight:600}
.card .m{display:flex;flex-direction:column;color:var(--muted)}.card .m.t{color:var(--fg)}
.card em{font-style:normal;font-size:.72rem;font-weight:400;color:var(--muted)}
#glance{background:none;border:0;padding:0}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(440px,100%),1fr));
gap:14px 24px}
figure{margin:0}figcaption{font-weight:600;font-size:.9rem}
.legend{display:flex;flex-wrap:wrap;gap:4px 14px;font-size:.8rem;color:var(--muted)}
.legend i{display:inline-block;width:14px;height:3px;margin-right:5px;vertical-align:middle}
svg.chart{width:100%;height:auto;display:block}
svg .grid{stroke:#edf0f4}svg .axis{stroke:#b8c0cc}
svg .tick,svg .axis-label{font-size:12px;fill:#5b6675}
.facts{font-size:.9rem}
details{margin:.6rem 0}summary{cursor:pointer;font-weight:600}
.samples{display:grid;gap:12px;margin-top:.5rem}
.sample{border:1px solid var(--line);border-radius:8px;padding:10px}
.task{float:right;font-size:.75rem;color:var(--muted);border:1px solid var(--line);
border-radius:10px;padding:0 8px}
.prompt{font-weight:500;white-space:pre-wrap;overflow-wrap:anywhere}
.input{display:block;color:var(--muted);font-weight:400}
.ref{font-size:.88rem;margin:.3rem 0;white-space:pre-wrap;overflow-wrap:anywhere}
.outs{display:grid;grid-template-columns:repeat(auto-fit,minmax(220px,1fr));gap:8px}
.lab{font-size:.8rem;font-weight:600}.lab .meta{font-weight:400;color:var(--muted);margin-left:6px}
.out pre{white-space:pre-wrap;overflow-wrap:anywhere;margin:2px 0 0;padding:6px 8px;
font:13px/1.45 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:#f3f5f8;
border-radius:6px;max-height:16em;overflow:auto}
.out.tuned pre{background:#eef4ff}
.stop{background:#d3f9d8;color:#1b5e20;border-radius:4px;padding:0 4px;font-weight:600;
white-space:nowrap}
.nostop{background:#ffe3e3;color:#8a1c1c;border-radius:4px;padding:0 4px;white-space:nowrap}
.badge{display:inline-block;border-radius:10px;padding:0 8px;font-size:.78rem;font-weight:600}
.badge.ok,.badge.info{background:#d3f9d8;color:#1b5e20}.badge.warning{background:#fff3bf;
color:#7a5200}.badge.error{background:#ffe3e3;color:#8a1c1c}.badge.skipped{background:#eceff3;
color:#5b6675}
ul.findings{padding-left:1.2rem;font-size:.9rem}
footer{color:var(--muted);font-size:.8rem;margin:18px 0}
@media (max-width:640px){main{padding:8px}section{padding:10px 12px}
dl.kv{grid-template-columns:repeat(auto-fill,minmax(150px,1fr))}header h1{font-size:1.15rem}
svg .tick,svg .axis-label{font-size:19px}
th,td{padding:4px 5px}table{font-size:.8rem}
table.metrics thead th{white-space:normal;vertical-align:bottom}
table.metrics tbody th{min-width:5.5em}
table.metrics .d{display:none}.glance{grid-template-columns:1fr;gap:6px}
.card{padding:6px 10px}}
"""

NAV = (("glance", "Summary"), ("config", "Run"), ("levers", "Levers"), ("curves", "Curves"),
       ("evals", "Before/after"), ("preference", "Preference"), ("samples", "Samples"), ("audit", "Audit"), ("timings", "Time"))
KIND = {"train": "training run", "demo": "demo", "eval": "evaluation"}


def render(data: RunData, samples: int = 6) -> str:
    """The whole page for a run."""
    sections = [glance_section(data), config_section(data), levers_section(data), curves_section(data),
                evals_section(data), preference_section(data), samples_section(data, samples), audit_section(data),
                timings_section(data)]
    body = "".join(sections)
    nav = "".join(f'<a href="#{anchor}">{label}</a>' for anchor, label in NAV
                  if f'id="{anchor}"' in body)
    files = [f for f in (data.config_file, data.metrics_file, *data.eval_files.values(),
                         data.audit_file, "report.json" if data.demo else None) if f]
    problems = "".join(f"<li>{escape(p)}</li>" for p in data.problems)
    title = f"{data.root.resolve().name} · instruct-tune {KIND[data.kind]}"
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'<meta name="generator" content="{GENERATOR} {__version__}">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body><main>"
        f"<header><h1>{escape(title)}</h1><p>{escape(str(data.root.resolve()))}</p>"
        f"<nav>{nav}</nav></header>{body}"
        f"<footer>Written by {GENERATOR} {__version__} on "
        f"{datetime.now().strftime('%Y-%m-%d %H:%M')} from {escape(', '.join(files))}. "
        "Hover a number to see the file and field it comes from."
        + (f"<ul>{problems}</ul>" if problems else "") + "</footer></main></body></html>\n")


def check_target(path: Path) -> None:
    """report.html is replaced only when we wrote it (a page of yours stays)."""
    if path.is_dir():
        raise ConfigError(f"{path} is a directory; give the page's file name, e.g. "
                          f"--out {path / 'report.html'}.")
    if path.exists():
        try:
            head = path.read_text(errors="replace")[:2000]
        except OSError as e:
            raise ConfigError(f"Cannot read {path} ({e.strerror}).") from None
        if f'name="generator" content="{GENERATOR}' not in head:
            raise ConfigError(f"{path} exists and was not written by instruct-tune report; move "
                              "it away or choose another --out.")


def write_report(run_dir: str | os.PathLike, out: str | os.PathLike | None = None,
                 samples: int = 6) -> Path:
    """Write the page for `run_dir` (default RUN_DIR/report.html, atomically) and return its path."""
    data = load_run(run_dir)
    path = Path(out) if out else Path(run_dir) / "report.html"
    check_target(path)
    html = render(data, samples)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(html, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:
        raise ConfigError(f"Cannot write {path}: {e.strerror}.") from None
    return path


__all__ = ["GENERATOR", "check_target", "render", "write_report"]
