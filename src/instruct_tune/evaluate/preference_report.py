"""Print `eval` on a preference file: the preference table (base = the reference, and the tuned
model side by side), then the usual generation report on the chosen answers (report.py)."""

from __future__ import annotations

import math

from rich.console import Console
from rich.table import Table
from rich.text import Text

# key -> (label, shown as a rate, +1 if higher is better); rewards exist only against a reference.
LOGP_ROWS: dict[str, tuple[str, bool, int]] = {
    "logps/accuracies": ("chosen preferred (summed log-prob)", True, 1),
    "mean_logps/accuracies": ("chosen preferred (per-token log-prob)", True, 1),
    "logps/margins": ("log-prob margin chosen − rejected (mean)", False, 1),
    "logps/chosen": ("log-prob of chosen (mean, summed)", False, 0),
    "logps/rejected": ("log-prob of rejected (mean, summed)", False, 0),
}
REWARD_ROWS: dict[str, tuple[str, bool, int]] = {
    "rewards/accuracies": ("reward accuracy (chosen gains more than rejected)", True, 1),
    "rewards/margins": ("reward margin (mean)", False, 1),
    "rewards/chosen": ("reward of chosen (mean)", False, 0),
    "rewards/rejected": ("reward of rejected (mean)", False, 0),
    "loss": ("DPO loss", False, -1),
}
NO_REFERENCE = ("rewards need a reference: pass --compare BASE, the model preference tuning "
                "started from (DPO's reward is beta × the log-prob gained over it). Shown: the "
                "model's own preference between the answers.")


def _fmt(value: float | None, rate: bool, signed: bool = False) -> str:
    if value is None:
        return "-"
    sign = "+" if signed else ""
    return f"{value * 100:{sign}.1f}%" if rate else f"{value:{sign},.3f}" if abs(value) < 10 \
        else f"{value:{sign},.1f}"


def print_preference(pref: dict, console: Console | None = None) -> None:
    """The preference table: base (reference) and tuned model side by side, with the difference."""
    console = console or Console()
    base = pref.get("base")
    skipped = (f"; {pref['not_scored']} not scored (longer than the model's context)"
               if pref.get("not_scored") else "")
    console.print(Text(f"preference: {pref['n']} pairs scored{skipped}"
                       + (f"; reference {base['model']}, DPO beta {pref['beta']:g}" if base else ""),
                       style="italic"),
                  soft_wrap=True)
    table = Table()
    table.add_column("metric")
    for name in (["base (reference)", "tuned", "Δ"] if base else ["value"]):
        table.add_column(name, justify="right")
    for key, (label, rate, better) in LOGP_ROWS.items():
        cells: list = [label, _fmt(pref[key], rate)]
        if base:
            d = pref[key] - base[key]
            style = "green" if better * d > 0 else "red" if better * d < 0 else ""
            cells = [label, _fmt(base[key], rate), _fmt(pref[key], rate), Text(_fmt(d, rate, True), style)]
        table.add_row(*cells)
    if base:
        for key, (label, rate, _) in REWARD_ROWS.items():
            # At the reference every reward is 0 and the loss is log 2: the "before" of a DPO run.
            before = math.log(2) if key == "loss" else None
            label = f"{label} at beta {pref['beta']:g}" if key == "loss" else label
            table.add_row(label, _fmt(before, rate), _fmt(pref[key], rate), "")
    console.print(table)
    if not base:
        console.print(Text(f"note: {NO_REFERENCE}", style="dim"), soft_wrap=True)


def print_pair_report(report: dict, console: Console | None = None) -> None:
    """The preference table, then the generation report on the chosen answers."""
    from .report import print_report

    console = console or Console()
    print_preference(report["preference"], console)
    console.print(Text("generation, scored against the chosen answers", style="italic"))
    print_report(report, console)
