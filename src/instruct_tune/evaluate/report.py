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
# With the few-shot baseline the per-task table shows what it compares: stops, leaks, exact
# match and length (ROUGE-L stays in the overall table).
FEW_SHOT_TASK_COLS = {"stop_rate": "stops", "template_leak_rate": "leaks",
                      "exact_match": "exact match", "mean_length": "length"}


def few_shot_label(report: dict) -> str:
    return f"base {report['base_few_shot']['k']}-shot"


def _models(report: dict) -> list[tuple[str, dict]]:
    """(column, metrics) of the compared models, base first, the tuned model last."""
    cols = [("base", report["base"])] if report.get("base") else []
    if report.get("base_few_shot"):
        cols.append((few_shot_label(report), report["base_few_shot"]))
    return cols + [("tuned" if cols else "value", report)]


def _task_cell(key: str, values: list[dict | None]) -> str:
    """'0.0% → 100.0%' (base → tuned) or '0.0% / 40.0% → 100.0%' (base / K-shot → tuned)."""
    shown = [fmt(key, v[key] if v and key in v else None) for v in values]
    return " → ".join([" / ".join(shown[:-1]), shown[-1]] if len(shown) > 1 else shown)


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
    base, shot = report.get("base"), report.get("base_few_shot")
    models = _models(report)
    # A heading line, not the table's title: a title wraps at the (narrow) table's width.
    console.print(Text(f"{report['model']}: {report['n']} records, template "
                       f"{report.get('template')}, max {report.get('max_new_tokens')} new tokens"
                       + (f"; {few_shot_label(report)}: {shot['k']} worked examples from "
                          f"{report['shots']['source']} before each question" if shot else ""),
                       style="italic"), soft_wrap=True)
    deltas = [("Δ", base)] + ([(f"Δ vs {shot['k']}-shot", shot)] if shot else []) if base else []
    table = Table()
    table.add_column("metric")
    for name, _ in models + deltas:
        table.add_column(name, justify="right")
    for key, (label, _, _) in ROWS.items():
        if key not in report:
            continue
        cells: list = [label, *(fmt(key, m[key]) for _, m in models)]
        for _, other in deltas:
            d = report[key] - other[key]
            cells.append(Text(fmt(key, d, signed=True), style=_delta_style(key, d)))
        table.add_row(*cells)
    console.print(table)

    if report.get("by_task"):
        # Headings are lines, not table titles: a title is padded (and wrapped) to the table width.
        order = " / ".join(name for name, _ in models[:-1])
        console.print(Text("per task" + (f" ({order} → tuned)" if base else ""), style="italic"),
                      soft_wrap=True)
        cols = FEW_SHOT_TASK_COLS if shot else TASK_COLS
        tasks = Table()
        for col in ("task", "n", *cols.values()):
            tasks.add_column(col, justify="left" if col == "task" else "right")
        for task, m in report["by_task"].items():
            values = [other.get("by_task", {}).get(task) for _, other in models]
            tasks.add_row(Text(task), str(m["n"]), *(_task_cell(k, values) for k in cols))
        console.print(tasks)

    if report.get("samples"):
        console.print(Text("sample generations", style="italic"), soft_wrap=True)
        if not console.is_terminal:
            _sample_lines(console, report["samples"], _sample_outputs(report))
            return
        outputs = _sample_outputs(report)
        samples = Table(show_lines=True)
        for col in ("instruction", "reference", *(label for label, _, _ in outputs)):
            samples.add_column(col, overflow="fold")
        for s in report["samples"]:
            # Text objects, not markup: model output may contain "[...]" that rich would parse.
            prompt = Text(_clip(s["instruction"]))
            if s.get("input"):
                prompt.append("\n" + _clip(s["input"]), style="dim")
            cells = [prompt, Text(_clip(s["reference"]))]
            cells += [_output(s[text], s[stopped]) for _, text, stopped in outputs]
            samples.add_row(*cells)
        console.print(samples)


def _sample_outputs(report: dict) -> list[tuple[str, str, str]]:
    """(label, text key, stopped key) of each model's output in a sample row."""
    outputs = [("base", "base_output", "base_stopped")] if report.get("base") else []
    if report.get("base_few_shot"):
        outputs.append((few_shot_label(report), "few_shot_output", "few_shot_stopped"))
    return outputs + [("tuned" if outputs else "output", "output", "stopped")]


def _sample_lines(console: Console, samples: list[dict], outputs: list[tuple[str, str, str]]) -> None:
    """Each sample as 'label: text' lines, unwrapped; a text's own line breaks are kept and
    indented under its first line."""
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
    base, shot = report.get("base"), report.get("base_few_shot")
    models = _models(report)
    lines = [f"## Evaluation of `{report['model']}`", "",
             f"{report['n']} records, template `{report.get('template')}`, "
             f"at most {report.get('max_new_tokens')} new tokens"
             + (f", compared with base `{base['model']}`" if base else "")
             + (f" zero-shot and {shot['k']}-shot (examples from `{report['shots']['source']}`)"
                if shot else "") + ".", ""]
    deltas = [("Δ", base)] + ([(f"Δ vs {shot['k']}-shot", shot)] if shot else []) if base else []
    heads = [name for name, _ in models + deltas]
    lines += ["| metric | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(heads)]
    lines += [f"| {label} | " + " | ".join(
        [fmt(k, m[k]) for _, m in models]
        + [fmt(k, report[k] - other[k], signed=True) for _, other in deltas]) + " |"
        for k, (label, _, _) in ROWS.items() if k in report]
    if report.get("by_task"):
        cols = FEW_SHOT_TASK_COLS if shot else TASK_COLS
        order = " / ".join(name for name, _ in models[:-1])
        lines += ["", "### Per task" + (f" ({order} → tuned)" if base else ""), "",
                  "| task | n | " + " | ".join(cols.values()) + " |",
                  "|---|---:|" + "---:|" * len(cols)]
        for task, m in report["by_task"].items():
            values = [other.get("by_task", {}).get(task) for _, other in models]
            lines.append(f"| {task} | {m['n']} | "
                         + " | ".join(_task_cell(k, values) for k in cols) + " |")
    if report.get("samples"):
        outputs = _sample_outputs(report)
        cols = ["instruction", "reference", *(label for label, _, _ in outputs)]
        lines += ["", "### Sample generations", "", "| " + " | ".join(cols) + " |",
                  "|" + "---|" * len(cols)]
        for s in report["samples"]:
            cells = [s["instruction"] + (f"\n{s['input']}" if s.get("input") else ""), s["reference"]]
            cells = [_md_escape(c) for c in cells]
            for _, text, stopped in outputs:
                cells.append(_md_escape(s[text]) + ("" if s[stopped] else " *(no stop)*"))
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
