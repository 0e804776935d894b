"""Print an AuditReport: one verdict per lever at the top, then the findings with examples."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .findings import LEVERS, MAX_EXAMPLES, AuditReport, Finding, pct, plural

TITLES = {"size": "Size", "task_diversity": "Task diversity",
          "phrasing_diversity": "Phrasing diversity", "output_quality": "Output quality",
          "contamination": "Contamination"}
STATUS = {"ok": "[green]ok[/]", "info": "[green]ok[/]", "warning": "[yellow]warn[/]",
          "error": "[bold red]ERROR[/]", "skipped": "[dim]skipped[/]"}
SEVERITY = {"error": "[bold red]error[/]", "warning": "[yellow]warning[/]", "info": "[cyan]info[/]"}


def _finding(console: Console, f: Finding) -> None:
    # Problems get their count and share, unless the message already gives the share.
    share = (f" · {f.count:,} ({pct(f.share)})"
             if f.severity != "info" and pct(f.share) not in f.message else "")
    console.print(f"  {SEVERITY[f.severity]} {escape(f.message)}[dim]{share}[/]")
    if f.advice:
        console.print(f"    [dim]{escape(f.advice)}[/]", highlight=False)
    for e in f.examples[:MAX_EXAMPLES]:
        line = f"    [magenta]{escape(str(e.source))}[/] {escape(e.text)}"
        if e.other is not None:
            line += f"\n      [dim]↔[/] [magenta]{escape(str(e.other))}[/] {escape(e.other_text)}"
        console.print(line, highlight=False)


def render(report: AuditReport, console: Console | None = None, source: str = "",
           seconds: float | None = None) -> None:
    console = console or Console()
    took = f" in {seconds:.1f}s" if seconds is not None else ""
    console.print(f"[bold]Audit of {escape(source) or 'data'}[/]: "
                  f"{plural(report.rows, 'row')}{took}\n")
    table = Table(show_header=False, box=None, padding=(0, 1))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(no_wrap=True)
    table.add_column()
    for name in LEVERS:
        lever = report[name]
        table.add_row(TITLES[name], STATUS[lever.status], escape(lever.verdict))
    console.print(table)
    for name in LEVERS:
        lever = report[name]
        if not lever.findings:
            continue
        console.print(f"\n[bold]{TITLES[name]}[/]")
        order = {"error": 0, "warning": 1, "info": 2}
        for f in sorted(lever.findings, key=lambda f: order[f.severity]):
            _finding(console, f)
    console.print("\n[bold]What this audit cannot tell[/]")
    for name in LEVERS:
        if report[name].limits:
            console.print(f"  [dim]{TITLES[name]}: {escape(report[name].limits)}[/]", highlight=False)
    errors = len(report.errors)
    warnings = sum(f.severity == "warning" for f in report.findings)
    console.print(f"\n{plural(errors, 'error')}, {plural(warnings, 'warning')}."
                  + (" Errors are almost surely data bugs: fix them before training (--strict "
                     "exits with status 1 on them)." if errors else
                     " Warnings are worth a look; some are intended (see each one's advice)."
                     if warnings else ""))
