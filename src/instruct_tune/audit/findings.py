"""What an audit returns: findings (severity, count, share, examples) grouped by lever.

A `Finding` keeps *every* affected row (so `--json` users can filter their data and tests can
check recall) but shows at most five examples. Severities mean:
- error: almost surely a data bug that trains a harmful behaviour (empty targets, chat markers in
  outputs, eval rows in training). `--strict` fails on these; a clean, well-made set has none.
- warning: worth a look; often a defect, sometimes intended (templated tasks, label noise).
- info: context and measurements.
Messages are written by the levers with the small formatters at the end (`plural`, `pct`,
`snippet`), so counts and shares read the same in every section of the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..data.records import Source

Severity = Literal["error", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = ("error", "warning", "info")
LEVERS = ("size", "task_diversity", "phrasing_diversity", "output_quality", "contamination")
MAX_EXAMPLES = 5
MAX_JSON_LINES = 1000  # cap on the affected-line list in JSON, to keep the output readable


@dataclass
class Example:
    """One affected row, with an optional second row it relates to (duplicate, conflict, ...)."""

    source: Source
    text: str
    other: Source | None = None
    other_text: str = ""

    def to_dict(self) -> dict:
        d = {"path": self.source.path, "line": self.source.line, "text": self.text}
        if self.other is not None:
            d |= {"other_path": self.other.path, "other_line": self.other.line,
                  "other_text": self.other_text}
        return d


@dataclass
class Finding:
    code: str  # stable machine name, e.g. "empty_output"
    severity: Severity
    message: str  # what was found, one line
    count: int
    total: int  # what `share` is a share of (rows, unique instructions, eval rows)
    advice: str = ""  # why it matters / what to do
    examples: list[Example] = field(default_factory=list)
    rows: list[Source] = field(default_factory=list)  # every affected row
    stats: dict = field(default_factory=dict)

    @property
    def share(self) -> float:
        return self.count / self.total if self.total else 0.0

    def to_dict(self) -> dict:
        lines = [s.line for s in self.rows]
        d = {"code": self.code, "severity": self.severity, "message": self.message,
             "count": self.count, "share": round(self.share, 6), "advice": self.advice,
             "examples": [e.to_dict() for e in self.examples[:MAX_EXAMPLES]],
             "lines": lines[:MAX_JSON_LINES]}
        if len(lines) > MAX_JSON_LINES:
            d["lines_truncated"] = True
        if self.stats:
            d["stats"] = self.stats
        return d


@dataclass
class LeverReport:
    name: str
    verdict: str
    findings: list[Finding] = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    checked: bool = True  # False when the lever could not run (e.g. no --eval-data)
    limits: str = ""  # what this lever cannot tell, said plainly

    @property
    def status(self) -> str:
        """Worst severity among findings: 'error', 'warning' or 'ok' ('skipped' if not run)."""
        if not self.checked:
            return "skipped"
        for sev in ("error", "warning"):
            if any(f.severity == sev for f in self.findings):
                return sev
        return "ok"

    def to_dict(self) -> dict:
        return {"verdict": self.verdict, "status": self.status, "checked": self.checked,
                "limits": self.limits, "stats": self.stats,
                "findings": [f.to_dict() for f in self.findings]}


@dataclass
class AuditReport:
    levers: dict[str, LeverReport]
    rows: int

    def __getitem__(self, name: str) -> LeverReport:
        return self.levers[name]

    @property
    def findings(self) -> list[Finding]:
        return [f for lever in self.levers.values() for f in lever.findings]

    def find(self, code: str) -> Finding | None:
        return next((f for f in self.findings if f.code == code), None)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    def to_dict(self) -> dict:
        return {name: lever.to_dict() for name, lever in self.levers.items()}


def snippet(text: str, width: int = 100) -> str:
    """One-line preview of a field for examples."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def examples_of(records, indices, field_: str = "instruction", pair_of: dict | None = None
                ) -> list[Example]:
    """Up to MAX_EXAMPLES examples for the given record indices (optionally paired rows)."""
    out, shown = [], set()
    for i in indices:
        if len(out) == MAX_EXAMPLES:
            break
        if pair_of and pair_of.get(i) in shown and pair_of.get(pair_of[i]) == i:
            continue  # the pair (j, i) is already shown as (i, j)
        shown.add(i)
        r = records[i]
        ex = Example(r.source, snippet(getattr(r, field_)))
        if pair_of and i in pair_of:
            o = records[pair_of[i]]
            ex.other, ex.other_text = o.source, snippet(getattr(o, field_))
        out.append(ex)
    return out


def plural(n: int, one: str, many: str | None = None) -> str:
    """"1 row", "3 rows", "1,200 rows". Pass `many` where adding "s" is wrong, which also lets a
    verb agree: plural(n, "row has", "rows have"). Every count in a message goes through here."""
    return f"{n:,} {one if n == 1 else many or one + 's'}"


def pct(x: float) -> str:
    return f"{100 * x:.1f}%" if x < 0.995 or x == 1 else f"{100 * x:.2f}%"
