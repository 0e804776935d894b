"""Which rows curate drops, and why: the audit's own per-row verdicts, applied in a fixed order.

Nothing here re-checks a row: contamination, the output checks, conflicts, duplicates,
near-duplicate groups and --max-length fit come from the functions the audit levers report
(contamination.prompt_matches, quality.output_checks / conflict_groups, phrasing.duplicate_rows /
near_duplicate_instructions, report.token_stats). Each row is dropped for the first reason that
applies, in REASONS order. Per-row defects come first, so the group checks (conflicts,
duplicates, the near-duplicate cap) see only rows that survive them: a row is "the kept copy" of
a duplicate only if it is itself kept, and an empty answer does not make its prompt a conflict.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from ...data.records import Record, Source
from ...errors import ConfigError
from ..contamination import prompt_matches
from ..context import AuditData
from ..phrasing import duplicate_rows, near_duplicate_instructions
from ..quality import conflict_groups, output_checks
from ..report import token_stats

# reason -> (what it means, the flag that keeps such rows); the order is the order of precedence.
REASONS: dict[str, tuple[str, str]] = {
    "invalid": ("invalid row (the loader's checks)", "--no-skip-invalid (stops instead)"),
    "contaminated": ("prompt found in --eval-data", "--keep-contaminated"),
    "empty_output": ("empty output", "--keep-empty"),
    "template_marker_in_output": ("template or chat markers in the output", "--keep-markers"),
    "echoes_instruction": ("output repeats the instruction", "--keep-copies"),
    "copies_input": ("output identical to the input", "--keep-copies"),
    "refusal_boilerplate": ("refusal or AI disclaimer", "--keep-refusals"),
    "cut_off_output": ("output stops mid-sentence", "--keep-cut-off"),
    "too_long": ("does not fit --max-length for --model", "--keep-too-long"),
    "conflicting_outputs": ("same prompt, different outputs", "--conflicts keep"),
    "duplicate_rows": ("repeats a kept row", "--keep-duplicates"),
    "near_duplicate_instructions": ("over --max-near-duplicates in its group",
                                    "leave out --max-near-duplicates"),
}
OUTPUT_CHECKS = ("empty_output", "template_marker_in_output", "echoes_instruction", "copies_input",
                 "refusal_boilerplate", "cut_off_output")
KEEPABLE = frozenset(REASONS) - {"invalid", "conflicting_outputs", "near_duplicate_instructions"}


@dataclass
class CurateOptions:
    keep: frozenset[str] = frozenset()  # reasons not to drop rows for (codes of REASONS)
    conflicts: Literal["drop", "keep-first", "keep"] = "drop"
    max_near_duplicates: int | None = None  # distinct instructions kept per near-duplicate group

    def __post_init__(self) -> None:
        self.keep = frozenset(self.keep)
        if bad := sorted(set(self.keep) - KEEPABLE):
            raise ConfigError(f"curate: unknown reason(s) to keep: {', '.join(bad)}; use "
                              f"{', '.join(sorted(KEEPABLE))}.")
        if self.conflicts not in ("drop", "keep-first", "keep"):
            raise ConfigError(f"--conflicts must be drop, keep-first or keep (got {self.conflicts!r}).")
        if self.max_near_duplicates is not None and self.max_near_duplicates < 1:
            raise ConfigError("--max-near-duplicates must be >= 1 (leave it out to keep all).")


@dataclass
class Drop:
    """One dropped row; `other` is the row it duplicates or conflicts with (or, for
    contamination, the eval row), `other_kept` whether that row is in the output."""

    source: Source
    reason: str
    detail: str = ""
    other: Source | None = None
    other_kept: bool = False
    row: int | None = None  # index into the records curated (None: an invalid row)

    def to_dict(self) -> dict:
        d = {"path": self.source.path, "line": self.source.line, "reason": self.reason}
        if self.detail:
            d["detail"] = self.detail
        if self.other is not None:
            d["other"] = {"path": self.other.path, "line": self.other.line, "kept": self.other_kept}
        return d


@dataclass
class Selection:
    kept: list[int]  # indices into the records, in order
    drops: list[Drop]
    near: dict = field(default_factory=dict)  # near-duplicate groups: counts (always reported)


def select_rows(records: Sequence[Record], *, options: CurateOptions | None = None,
                eval_records: Sequence[Record] | None = None, tokenizer=None, template=None,
                max_length: int = 2048,
                progress: Callable[[str], None] | None = None) -> Selection:
    """Decide which rows to keep. `tokenizer` (with `template`) enables the --max-length check."""
    step = progress or (lambda name: None)
    options = options or CurateOptions()
    d = AuditData(list(records))
    keep, alive = options.keep, [True] * d.n
    dropped: dict[int, Drop] = {}
    other_row: dict[int, int] = {}  # dropped row -> the training row it refers to

    def drop(i: int, reason: str, detail: str = "", other: int | None = None) -> None:
        if alive[i]:
            alive[i] = False
            dropped[i] = Drop(d.records[i].source, reason, detail, row=i)
            if other is not None:
                other_row[i] = other
                dropped[i].other = d.records[other].source

    if eval_records and "contaminated" not in keep:
        step("contamination")
        ev = list(eval_records)
        for e, t, kind, jac in prompt_matches(d, ev):
            how = "same prompt" if kind == "exact" else f"near-duplicate prompt (Jaccard {jac:.2f})"
            if alive[t]:
                drop(t, "contaminated", f"{how} as eval row {ev[e].source}")
                dropped[t].other = ev[e].source
    step("output checks")
    special = [t for t in getattr(tokenizer, "all_special_tokens", []) if t] if tokenizer else []
    checks = output_checks(d, special)
    for code in OUTPUT_CHECKS:
        if code not in keep:
            for i in checks[code]:
                drop(i, code)
    if tokenizer is not None and "too_long" not in keep:
        step("tokenizing with the model's tokenizer")
        live = [i for i in range(d.n) if alive[i]]
        at: dict[tuple[str, int], list[int]] = {}
        for i in live:
            at.setdefault((d.records[i].source.path, d.records[i].source.line), []).append(i)
        stats = token_stats([d.records[i] for i in live], tokenizer, template, max_length)
        for p in stats.dropped:
            for i in at.get((p.path, p.line or 0), ()):
                drop(i, "too_long", p.message)
    step("conflicts and duplicates")
    if options.conflicts != "keep":
        for g in conflict_groups(d, alive):
            first = g[0]
            for i in g if options.conflicts == "drop" else g[1:]:
                if options.conflicts == "keep-first" and d.outputs[i] == d.outputs[first]:
                    continue  # same answer as the kept row: a duplicate, decided below
                other = next(j for j in g if d.outputs[j] != d.outputs[i])
                drop(i, "conflicting_outputs", "same prompt, different output", other)
    if "duplicate_rows" not in keep:
        for i, j in duplicate_rows(d, alive).items():
            drop(i, "duplicate_rows", "same prompt and output", j)
    step("near-duplicate instructions")
    near = _near_duplicate_cap(d, alive, options.max_near_duplicates, drop)
    for i, j in other_row.items():  # whether the row referred to made it into the output
        dropped[i].other_kept = alive[j]
    kept = [i for i in range(d.n) if alive[i]]
    return Selection(kept, [dropped[i] for i in sorted(dropped)], near)


def _near_duplicate_cap(d: AuditData, alive: list[bool], cap: int | None, drop) -> dict:
    """Report the near-duplicate instruction groups; with `cap`, keep the first `cap` distinct
    instructions of each group (in order of their first kept row) and drop the rest's rows."""
    comps, _ = near_duplicate_instructions(d)
    distinct = list(d.instruction_groups.values())
    live_rows = [[i for i in distinct[g] if alive[i]] for c in comps for g in c]
    stats = {"groups": len(comps), "rows": sum(map(len, live_rows)), "max_per_group": cap,
             "dropped": 0}
    if cap is None:
        return stats
    for comp in comps:
        members = sorted(([i for i in distinct[g] if alive[i]] for g in comp), key=lambda r: r[:1] or [d.n])
        members = [m for m in members if m]
        for rows in members[cap:]:
            for i in rows:
                drop(i, "near_duplicate_instructions",
                     f"its group has {len(members)} near-duplicate instructions; "
                     f"--max-near-duplicates keeps {cap}", members[0][0])
                stats["dropped"] += 1
    return stats

