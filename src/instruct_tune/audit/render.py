"""Print an AuditReport: one verdict per lever at the top, then the findings with examples.

On a terminal rich wraps long lines to its width. In a file or pipe nothing is wrapped or padded:
each line ends where its text does, so a finding or its advice stays one line for grep and diff.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from .findings import MAX_EXAMPLES, AuditReport, Finding, pct, plural

TITLES = {"size": "Size", "task_diversity": "Task diversity",
          "phrasing_diversity": "Phrasing diversity", "output_quality": "Output quality",
          "contamination": "Contamination", "pairs": "Pairs", "length_bias": "Length bias"}
STATUS = {"ok": "[green]ok[/]", "info": "[green]ok[/]", "warning": "[yellow]warn[/]",
          "error": "[bold red]ERROR[/]", "skipped": "[dim]skipped[/]"}
SEVERITY = {"error": "[bold red]error[/]", "warning": "[yellow]warning[/]", "info": "[cyan]info[/]"}


def _finding(say: Callable, f: Finding) -> None:
    # Problems get their count and share, unless the message already gives the share.
    share = (f" · {f.count:,} ({pct(f.share)})"
             if f.severity != "info" and pct(f.share) not in f.message else "")
    say(f"  {SEVERITY[f.severity]} {escape(f.message)}[dim]{share}[/]")
    if f.advice:
        say(f"    [dim]{escape(f.advice)}[/]", highlight=False)
    for e in f.examples[:MAX_EXAMPLES]:
        line = f"    [magenta]{escape(str(e.source))}[/] {escape(e.text)}"
        if e.other is not None:
            line += f"\n      [dim]↔[/] [magenta]{escape(str(e.other))}[/] {escape(e.other_text)}"
        say(line, highlight=False)


def _verdicts(console: Console, say: Callable, rows: list[tuple[str, str, str]]) -> None:
    """Lever, status, verdict: a rich table on a terminal (the verdict wraps in its column);
    otherwise the same columns as plain lines, which a table would pad to its full width."""
    if console.is_terminal:
        table = Table(show_header=False, box=None, padding=(0, 1))
        table.add_column(style="bold", no_wrap=True)
        table.add_column(no_wrap=True)
        table.add_column()
        for row in rows:
            table.add_row(*row)
        console.print(table)
        return
    width = [max(Text.from_markup(r[i]).cell_len for r in rows) for i in (0, 1)]
    for title, status, verdict in rows:
        pad = " " * (width[1] - Text.from_markup(status).cell_len)
        say(f"[bold]{title:<{width[0]}}[/]  {status}{pad}  {verdict}")


def render(report: AuditReport, console: Console | None = None, source: str = "",
           seconds: float | None = None) -> None:
    console = console or Console()
    say = console.print if console.is_terminal else partial(console.print, soft_wrap=True)
    took = f" in {seconds:.1f}s" if seconds is not None else ""
    say(f"[bold]Audit of {escape(source) or 'data'}[/]: {plural(report.rows, 'row')}{took}\n")
    _verdicts(console, say, [(TITLES[name], STATUS[report[name].status], escape(report[name].verdict))
                             for name in report.levers])
    for name in report.levers:
        lever = report[name]
        if not lever.findings:
            continue
        say(f"\n[bold]{TITLES[name]}[/]")
        order = {"error": 0, "warning": 1, "info": 2}
        for f in sorted(lever.findings, key=lambda f: order[f.severity]):
            _finding(say, f)
    say("\n[bold]What this audit cannot tell[/]")
    for name in report.levers:
        if report[name].limits:
            say(f"  [dim]{TITLES[name]}: {escape(report[name].limits)}[/]", highlight=False)
    errors = len(report.errors)
    warnings = sum(f.severity == "warning" for f in report.findings)
    say(f"\n{plural(errors, 'error')}, {plural(warnings, 'warning')}."
        + (" Errors are almost surely data bugs: fix them before training (--strict exits with "
           "status 1 on them)." if errors else
           " Warnings are worth a look; some are intended (see each one's advice)."
           if warnings else ""))
