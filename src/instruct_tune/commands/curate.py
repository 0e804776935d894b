"""`instruct-tune curate DATA [DATA ...] --out clean.jsonl`: drop what `audit` finds, mix sources.

stdout gets the summary: one row per reason (a table on a terminal; tab-separated lines, no
padding or wrapping, when piped); stderr the progress and notes.
"""

from __future__ import annotations

import dataclasses
import sys
import time

from ..config import CurateConfig
from .tokenizer import tokenizer_for

KEEP_FLAGS = {"keep_duplicates": "duplicate_rows", "keep_contaminated": "contaminated",
              "keep_empty": "empty_output", "keep_copies": ("echoes_instruction", "copies_input"),
              "keep_refusals": "refusal_boilerplate", "keep_cut_off": "cut_off_output",
              "keep_markers": "template_marker_in_output", "keep_too_long": "too_long"}


def preflight(cfg: CurateConfig) -> None:
    """Bad source specs and an unsafe --out fail before any file or tokenizer loads."""
    from ..audit.curate.files import check_out, sources_of

    specs = sources_of(cfg.data, cfg.mix)
    check_out(cfg.out, [s.path for s in specs] + ([cfg.eval_data] if cfg.eval_data else []),
              cfg.overwrite)


def keep_reasons(cfg: CurateConfig) -> frozenset[str]:
    out: set[str] = set()
    for flag, reasons in KEEP_FLAGS.items():
        if getattr(cfg, flag):
            out |= {reasons} if isinstance(reasons, str) else set(reasons)
    return frozenset(out)


def run(cfg: CurateConfig) -> int:
    from rich.console import Console

    from ..audit.curate import CurateOptions, curate_files

    err = Console(stderr=True, soft_wrap=True)
    t0 = time.perf_counter()
    options = CurateOptions(keep_reasons(cfg), cfg.conflicts, cfg.max_near_duplicates)
    with err.status("loading", spinner="dots") as status:
        tokenizer = template = None
        if cfg.model:
            status.update(f"loading tokenizer {cfg.model}")
            tokenizer, template, cfg = tokenizer_for(cfg, err.print)
        settings = {k: v for k, v in dataclasses.asdict(cfg).items()
                    if k not in ("data", "out", "mix", "overwrite")}
        report = curate_files(cfg.data, cfg.out, mix=cfg.mix, rows=cfg.rows, seed=cfg.seed,
                              eval_data=cfg.eval_data, tokenizer=tokenizer, template=template,
                              max_length=cfg.max_length, options=options, format=cfg.format,
                              columns=cfg.columns, skip_invalid=cfg.skip_invalid,
                              overwrite=cfg.overwrite, settings=settings,
                              progress=lambda s: status.update(f"curating: {s}"))
    for note in report.notes:
        err.print(note, markup=False, highlight=False)
    print_summary(report, time.perf_counter() - t0)
    return 0


def print_summary(report, seconds: float) -> None:
    from rich.console import Console
    from rich.table import Table

    m = report.manifest
    rows_in, rows_out = m["rows_read"], m["rows_written"]
    dropped = sum(m["summary"].values())
    head = (f"Curated {rows_in:,} rows from {len(m['sources'])} source"
            f"{'s' if len(m['sources']) > 1 else ''} in {seconds:.1f}s: dropped {dropped:,}, "
            f"wrote {rows_out:,} rows to {report.out} (every dropped row, its reason and the row "
            f"it repeats or conflicts with: {report.manifest_path})")
    near = m["near_duplicates"]
    near_line = ""
    if near.get("groups") and not near.get("max_per_group"):
        near_line = (f"{near['groups']:,} groups of near-duplicate instructions ({near['rows']:,} "
                     "rows) kept: --max-near-duplicates K keeps K per group")
    mix = [f"mix (seed {m['mix']['seed']}): {p}" for p in m["mix"]["parts"]] if m["mix"] else []
    lines = report.summary()
    if not sys.stdout.isatty():  # piped: plain tab-separated lines, nothing padded or wrapped
        print(head)
        print("reason\trows\tshare\twhat\tkeep with")
        for reason, n, what, flag in lines:
            print(f"{reason}\t{n}\t{_share(n, rows_in)}\t{what}\t{flag}")
        for extra in [near_line, *mix]:
            if extra:
                print(extra)
        return
    out = Console(soft_wrap=True)
    out.print(head, markup=False, highlight=False)
    if lines:
        table = Table(box=None, padding=(0, 1), show_edge=False)
        cells = [(reason, f"{n:,}", _share(n, rows_in), what, flag) for reason, n, what, flag in lines]
        for k, (col, justify) in enumerate((("reason", "left"), ("rows", "right"),
                                            ("share", "right"), ("what", "left"),
                                            ("keep with", "left"))):
            fixed = k < 3  # names and numbers never shrink; the prose columns wrap instead
            table.add_column(col, justify=justify, no_wrap=fixed, min_width=max(
                len(col), *(len(c[k]) for c in cells)) if fixed else None)
        for row in cells:
            table.add_row(*row)
        out.print(table)
    else:
        out.print("Nothing to drop: no row failed a check.")
    for extra in [near_line, *mix]:
        if extra:
            out.print(extra, markup=False, highlight=False)


def _share(n: int, total: int) -> str:
    return f"{100 * n / total:.1f}%" if total else "-"
