"""The page's sections that are not evaluation tables: the run's configuration, the training
curves (loss, eval loss, the generation checks logged as eval/...), the data audit and the
demo's time per stage. Each returns "" when the run has nothing for it."""

from __future__ import annotations

import re
from html import escape

from .cells import num, ptr
from .sources import RunData
from .svg import Series, line_chart

# Config keys shown in the summary (label, key, format), in this order, when present.
TRAIN_KEYS = (("base model", "model", "raw"), ("training data", "data", "raw"),
              ("eval data", "eval_data", "raw"), ("template", "template", "raw"),
              ("method", "method", "raw"), ("LoRA", "lora", "bool"), ("LoRA rank", "lora_r", "raw"),
              ("learning rate", "lr", "raw"), ("schedule", "schedule", "raw"),
              ("warmup share", "warmup_ratio", "raw"), ("epochs", "epochs", "raw"),
              ("max steps", "max_steps", "raw"), ("batch size", "batch_size", "raw"),
              ("grad accumulation", "grad_accum", "raw"), ("packing", "packing", "bool"),
              ("max length", "max_length", "raw"), ("precision", "precision", "raw"),
              ("seed", "seed", "raw"), ("out", "out", "raw"))
LORA_ONLY = {"lora_r"}
COLORS = {"loss": "#1f6feb", "eval_loss": "#e8590c", "eval/stop_rate": "#1f6feb",
          "eval/exact_match": "#0a7a3d", "eval/template_leak_rate": "#b42318"}
PALETTE = ("#7048e8", "#0c8599", "#c2255c", "#5c940d", "#e67700")


def _kv(label: str, cell: str) -> str:
    """A label/value pair; long values (paths) take the whole row."""
    wide = len(re.sub(r"<[^>]+>", "", cell)) > 28
    cls = ' class="wide"' if wide else ""
    return f"<div{cls}><dt>{escape(label)}</dt>{cell}</div>"


def config_section(data: RunData) -> str:
    items: list[str] = []
    demo = data.demo or {}
    if demo:
        base = demo.get("base_model", {})
        if "model" in base:
            items.append(_kv("base model", num(base["model"], ptr("report.json", "base_model",
                                                                   "model"), "raw", "dd")))
        if isinstance(base.get("params"), int):
            items.append(_kv("base parameters", num(base["params"], ptr(
                "report.json", "base_model", "params"), "int", "dd")))
        if isinstance(demo.get("tasks"), int):
            items.append(_kv("task types", num(demo["tasks"], ptr("report.json", "tasks"),
                                               "int", "dd")))
        for split, n in (demo.get("rows") or {}).items():
            items.append(_kv(f"rows: {split}", num(n, ptr("report.json", "rows", split),
                                                   "int", "dd")))
        if "total_wall_s" in demo:
            items.append(_kv("demo time (s)", num(demo["total_wall_s"], ptr(
                "report.json", "total_wall_s"), "sec", "dd")))
    cfg, src = data.config, data.config_file
    for label, key, fmt in TRAIN_KEYS:
        if src and cfg.get(key) is not None and not (key in LORA_ONLY and not cfg.get("lora")) \
                and not (demo and key == "model"):
            items.append(_kv(label, num(cfg[key], ptr(src, key), fmt, "dd")))
    if data.kind == "eval" and data.evals:
        name, rep = next(iter(data.evals.items()))
        f = data.eval_files[name]
        items.append(_kv("model", num(rep["model"], ptr(f, "model"), "raw", "dd")))
        if rep.get("base"):
            items.append(_kv("compared with", num(rep["base"]["model"], ptr(f, "base", "model"),
                                                  "raw", "dd")))
        for label, key in (("template", "template"), ("max new tokens", "max_new_tokens"),
                           ("temperature", "temperature")):
            if rep.get(key) is not None:
                items.append(_kv(label, num(rep[key], ptr(f, key), "raw", "dd")))
        if rep.get("shots"):
            items.append(_kv("few-shot examples from", num(rep["shots"]["source"],
                                                           ptr(f, "shots", "source"), "raw", "dd")))
    if not items:
        return ""
    where = data.config_file or (data.eval_files and next(iter(data.eval_files.values()))) or ""
    return (f'<section id="config"><h2>Run</h2><dl class="kv">{"".join(items)}</dl>'
            f'<p class="src">from {escape(("report.json, " if demo else "") + where)}</p></section>')


def _points(data: RunData, key: str) -> list[tuple[int, int, float]]:
    """(record index, step, value) of every record that logged a number for `key`."""
    return [(i, r["step"], r[key]) for i, r in enumerate(data.metrics)
            if isinstance(r.get(key), int | float) and not isinstance(r.get(key), bool)]


def _chart(data: RunData, keys: list[str], title: str, percent: bool) -> str:
    series, legend = [], []
    for j, key in enumerate(keys):
        pts = _points(data, key)
        if not pts:
            continue
        color = COLORS.get(key, PALETTE[j % len(PALETTE)])
        series.append(Series(key, key, [(s, v) for _, s, v in pts], color,
                             dashed=key == "eval_loss"))
        legend.append(f'<span><i style="background:{color}"></i>{escape(key)}</span>')
    if not series:
        return ""
    return (f'<figure data-src="{escape(data.metrics_file or "")}"><figcaption>{escape(title)}'
            f'</figcaption><div class="legend">{"".join(legend)}</div>'
            f"{line_chart(series, title=title, percent=percent)}</figure>")


def _loss_facts(data: RunData) -> str:
    f = data.metrics_file or ""
    facts = []
    loss = _points(data, "loss")
    if loss:
        (i0, s0, v0), (i1, s1, v1) = loss[0], loss[-1]
        facts.append(f"training loss {num(v0, ptr(f, i0, 'loss'), 'loss', 'span')} at step "
                     f"{num(s0, ptr(f, i0, 'step'), 'int', 'span')} → "
                     f"{num(v1, ptr(f, i1, 'loss'), 'loss', 'span')} at step "
                     f"{num(s1, ptr(f, i1, 'step'), 'int', 'span')}")
    ev = _points(data, "eval_loss")
    if ev:
        i, s, v = min(ev, key=lambda p: p[2])
        facts.append(f"lowest eval loss {num(v, ptr(f, i, 'eval_loss'), 'loss', 'span')} at step "
                     f"{num(s, ptr(f, i, 'step'), 'int', 'span')}")
    return f'<p class="facts">{"; ".join(facts)}.</p>' if facts else ""


def curves_section(data: RunData) -> str:
    if not data.metrics:
        return ""
    charts = [_chart(data, ["loss", "eval_loss"], "loss per trained token", False)]
    gen = sorted({k for r in data.metrics for k in r if k.startswith("eval/")})
    rates = [k for k in gen if all(0 <= v <= 1 for _, _, v in _points(data, k))
             and "length" not in k]
    others = [k for k in gen if k not in rates]
    # The stop rate is the curve to see: first, next to the loss.
    rates.sort(key=lambda k: (k != "eval/stop_rate", k != "eval/exact_match", k))
    if rates:
        charts.append(_chart(data, rates, "generation checks on eval prompts", True))
    charts += [_chart(data, [k], k, False) for k in others]
    return (f'<section id="curves"><h2>Training curves</h2><div class="charts">{"".join(charts)}'
            f'</div>{_loss_facts(data)}<p class="src">from {escape(data.metrics_file or "")}'
            "</p></section>")


def audit_section(data: RunData) -> str:
    if not data.audit:
        return ""
    from ..audit.render import TITLES

    f = data.audit_file or "audit.json"
    rows, findings = [], []
    for lever, rep in data.audit.items():
        status = rep.get("status", "?")
        rows.append(f"<tr><td>{escape(TITLES.get(lever, lever))}</td><td><span class=\"badge "
                    f"{escape(status)}\">{escape(status)}</span></td><td>"
                    f"{escape(rep.get('verdict', ''))}</td></tr>")
        for k, finding in enumerate(rep.get("findings", [])):
            if finding.get("severity") in ("error", "warning"):
                findings.append(
                    f'<li><span class="badge {escape(finding["severity"])}">'
                    f'{escape(finding["severity"])}</span> {escape(finding.get("message", ""))} '
                    f'({num(finding.get("count"), ptr(f, lever, "findings", k, "count"), "int", "span")}'
                    f' rows)</li>')
    more = f"<h3>Findings</h3><ul class=\"findings\">{''.join(findings)}</ul>" if findings else ""
    return (f'<section id="audit"><h2>Training data audit</h2><div class="scroll"><table>'
            f"<thead><tr><th>lever</th><th>status</th><th>verdict</th></tr></thead><tbody>"
            f'{"".join(rows)}</tbody></table></div>{more}<p class="src">from {escape(f)} '
            f"(all findings: instruct-tune audit)</p></section>")


def timings_section(data: RunData) -> str:
    stages = (data.demo or {}).get("timings") or {}
    if not stages:
        return ""
    rows = "".join(
        f"<tr><td>{escape(name)}</td>{num(t.get('wall_s'), ptr('report.json', 'timings', name, 'wall_s'), 'sec')}"
        f"{num(t.get('cpu_s'), ptr('report.json', 'timings', name, 'cpu_s'), 'sec')}</tr>"
        for name, t in stages.items())
    return ('<section id="timings"><h2>Time per stage</h2><div class="scroll"><table><thead><tr>'
            '<th>stage</th><th class="num">wall s</th><th class="num">cpu s</th></tr></thead>'
            f'<tbody>{rows}</tbody></table></div><p class="src">from report.json</p></section>')


__all__ = ["audit_section", "config_section", "curves_section", "timings_section"]
