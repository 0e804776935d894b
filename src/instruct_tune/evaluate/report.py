"""Render an evaluation report: rich tables for the terminal, Markdown for files and the demo.

In a file or pipe the samples are labelled lines instead of a table (a table of four long texts is
only readable at a terminal's width), and no line is wrapped or padded.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

# metric key -> (label, is a rate shown as %, +1 if higher is better / -1 if lower / 0 neutral)
ROWS: dict[str, tuple[str, bool, int]] = {
    "stop_rate": ("stops (stop token within limit)", True, 1),
    "template_leak_rate": ("template leak (runs on into a new turn)", True, -1),
    "exact_match": ("exact match", True, 1),
    "normalized_exact_match": ("normalized exact match", True, 1),
    "rouge_l": ("ROUGE-L F1", True, 1),
    "mean_length": ("mean output length (tokens)", False, 0),
    "p95_length": ("p95 output length (tokens)", False, 0),
}
TASK_COLS = {"stop_rate": "stops", "template_leak_rate": "leaks", "exact_match": "exact match",
             "rouge_l": "ROUGE-L"}


def fmt(key: str, value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    rate = ROWS.get(key, ("", True, 0))[1]
    sign = "+" if signed else ""
    return f"{value * 100:{sign}.1f}%" if rate else f"{value:{sign}.1f}"


def _delta_style(key: str, delta: float) -> str:
    better = ROWS[key][2] * delta
    return "green" if better > 0 else "red" if better < 0 else ""


def _clip(text: str, n: int = 240) -> str:
    text = text.strip()
    return text if len(text) <= n else text[:n - 1] + "…"


def _output(text: str, stopped: bool) -> Text:
    out = Text(_clip(text))
    if not stopped:
        out.append(" [no stop]", style="red")
    return out


def print_report(report: dict, console: Console | None = None) -> None:
    """Print the metrics (side by side with the base model when compared), per task, samples."""
    console = console or Console()
    base = report.get("base")
    # A heading line, not the table's title: a title wraps at the (narrow) table's width.
    console.print(Text(f"{report['model']}: {report['n']} records, template "
                       f"{report.get('template')}, max {report.get('max_new_tokens')} new tokens",
                       style="italic"), soft_wrap=True)
    table = Table()
    table.add_column("metric")
    if base:
        table.add_column("base", justify="right")
    table.add_column("tuned" if base else "value", justify="right")
    if base:
        table.add_column("Δ", justify="right")
    for key, (label, _, _) in ROWS.items():
        if key not in report:
            continue
        cells = [label]
        if base:
            d = report[key] - base[key]
            cells += [fmt(key, base[key]), fmt(key, report[key]),
                      Text(fmt(key, d, signed=True), style=_delta_style(key, d))]
        else:
            cells.append(fmt(key, report[key]))
        table.add_row(*cells)
    console.print(table)

    if report.get("by_task"):
        # Headings are lines, not table titles: a title is padded (and wrapped) to the table width.
        console.print(Text("per task" + (" (base → tuned)" if base else ""), style="italic"),
                      soft_wrap=True)
        tasks = Table()
        for col in ("task", "n", *TASK_COLS.values()):
            tasks.add_column(col, justify="left" if col == "task" else "right")
        for task, m in report["by_task"].items():
            b = (base or {}).get("by_task", {}).get(task)
            cells = [Text(task), str(m["n"])]
            for k in TASK_COLS:
                cells.append(f"{fmt(k, b[k])} → {fmt(k, m[k])}" if b else fmt(k, m[k]))
            tasks.add_row(*cells)
        console.print(tasks)

    if report.get("samples"):
        console.print(Text("sample generations", style="italic"), soft_wrap=True)
        if not console.is_terminal:
            _sample_lines(console, report["samples"], bool(base))
            return
        samples = Table(show_lines=True)
        for col in ("instruction", "reference", *(("base",) if base else ()), "tuned" if base else "output"):
            samples.add_column(col, overflow="fold")
        for s in report["samples"]:
            # Text objects, not markup: model output may contain "[...]" that rich would parse.
            prompt = Text(_clip(s["instruction"]))
            if s.get("input"):
                prompt.append("\n" + _clip(s["input"]), style="dim")
            cells = [prompt, Text(_clip(s["reference"]))]
            if base:
                cells.append(_output(s["base_output"], s["base_stopped"]))
            cells.append(_output(s["output"], s["stopped"]))
            samples.add_row(*cells)
        console.print(samples)


def _sample_lines(console: Console, samples: list[dict], base: bool) -> None:
    """Each sample as 'label: text' lines, unwrapped; a text's own line breaks are kept and
    indented under its first line."""
    outputs = [("base", "base_output", "base_stopped")] if base else []
    outputs.append(("tuned" if base else "output", "output", "stopped"))
    for i, s in enumerate(samples, 1):
        fields = [("instruction", Text(_clip(s["instruction"])))]
        if s.get("input"):
            fields.append(("input", Text(_clip(s["input"]))))
        fields.append(("reference", Text(_clip(s["reference"]))))
        fields += [(label, _output(s[text], s[stopped])) for label, text, stopped in outputs]
        for label, value in fields:
            head = f"{i}. {label}: " if label == "instruction" else f"   {label}: "
            for j, line in enumerate(value.split("\n")):
                line.rstrip()
                prefix = head if j == 0 else " " * len(head)
                console.print(Text(prefix) + line if line.plain else Text(prefix.rstrip()),
                              soft_wrap=True)


def _md_escape(text: str) -> str:
    return _clip(text, 200).replace("|", "\\|").replace("\n", "<br>") or "∅"


def to_markdown(report: dict) -> str:
    """The same report as a Markdown document."""
    base = report.get("base")
    lines = [f"## Evaluation of `{report['model']}`", "",
             f"{report['n']} records, template `{report.get('template')}`, "
             f"at most {report.get('max_new_tokens')} new tokens"
             + (f", compared with base `{base['model']}`." if base else "."), ""]
    if base:
        lines += ["| metric | base | tuned | Δ |", "|---|---:|---:|---:|"]
        lines += [f"| {label} | {fmt(k, base[k])} | {fmt(k, report[k])} | "
                  f"{fmt(k, report[k] - base[k], signed=True)} |"
                  for k, (label, _, _) in ROWS.items() if k in report]
    else:
        lines += ["| metric | value |", "|---|---:|"]
        lines += [f"| {label} | {fmt(k, report[k])} |" for k, (label, _, _) in ROWS.items() if k in report]
    if report.get("by_task"):
        heads = list(TASK_COLS.values())
        lines += ["", "### Per task" + (" (base → tuned)" if base else ""), "",
                  "| task | n | " + " | ".join(heads) + " |", "|---|---:|" + "---:|" * len(heads)]
        for task, m in report["by_task"].items():
            b = (base or {}).get("by_task", {}).get(task)
            cells = [f"{fmt(k, b[k])} → {fmt(k, m[k])}" if b else fmt(k, m[k]) for k in TASK_COLS]
            lines.append(f"| {task} | {m['n']} | " + " | ".join(cells) + " |")
    if report.get("samples"):
        cols = ["instruction", "reference", *(["base"] if base else []), "tuned" if base else "output"]
        lines += ["", "### Sample generations", "", "| " + " | ".join(cols) + " |",
                  "|" + "---|" * len(cols)]
        for s in report["samples"]:
            cells = [s["instruction"] + (f"\n{s['input']}" if s.get("input") else ""), s["reference"]]
            cells = [_md_escape(c) for c in cells]
            outs = [("base_output", "base_stopped")] if base else []
            for text, stopped in [*outs, ("output", "stopped")]:
                cells.append(_md_escape(s[text]) + ("" if s[stopped] else " *(no stop)*"))
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
