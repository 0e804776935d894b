"""Lever 1, size: how much data there is, counted so duplicates don't flatter it, and in context.

Reference points (what the verdict compares against):
- OpenAI's fine-tuning guide: at least 10 examples were required; start with 50-100.
- LIMA (Zhou et al., 2023): about 1,000 carefully curated examples gave strong instruction following.
- Alpaca (Taori et al., 2023): 52,000 generated examples.
The lesson of LIMA is that past a modest size, diversity and quality matter more than volume, so
the verdict points there rather than at "more rows".
"""

from __future__ import annotations

import numpy as np

from ..data.records import Source
from ..data.validate import summarize_problems
from .context import AuditData
from .findings import Example, Finding, LeverReport, plural, snippet

MIN_ROWS, START_ROWS, LIMA_ROWS, ALPACA_ROWS = 10, 50, 1_000, 52_000


def _dist(values: list[int]) -> dict:
    if not values:
        return {"mean": 0, "median": 0, "p95": 0, "max": 0}
    a = np.asarray(values)
    return {"mean": round(float(a.mean()), 1), "median": float(np.median(a)),
            "p95": float(np.percentile(a, 95)), "max": int(a.max())}


def _scale(unique: int) -> tuple[str, str, str]:
    """(severity, short verdict, advice) for a set of `unique` distinct prompts."""
    prompts = plural(unique, "distinct prompt")
    if unique < MIN_ROWS:
        return ("error", f"too small to fine-tune on ({prompts}; OpenAI's "
                f"fine-tuning API required at least {MIN_ROWS})",
                "Write more examples: OpenAI suggested starting with 50-100 well-made ones.")
    if unique < START_ROWS:
        return ("warning", f"very small ({prompts}; OpenAI suggested starting with "
                "50-100)", "Enough to teach a format, not a skill; add varied examples "
                "and hold some out to check the model generalises.")
    if unique < LIMA_ROWS:
        return ("info", f"small ({prompts}; LIMA used ~1,000 curated examples)",
                "At this size every row counts: diversity of tasks and quality of outputs matter "
                "more than volume: fix what the other levers flag before adding rows.")
    if unique < ALPACA_ROWS:
        return ("info", f"medium ({prompts}: between LIMA's ~1,000 curated and "
                "Alpaca's 52,000 generated)",
                "Volume is unlikely to be the bottleneck; duplicates, narrow tasks and bad outputs "
                "are more likely to limit the model.")
    return ("info", f"large ({prompts}: Alpaca scale, 52,000 generated, or more)",
            "Volume is not the bottleneck; deduplication and quality filtering pay off most.")


def invalid_rows(d: AuditData) -> Finding:
    """The rows loading skipped as invalid (audit reads with --skip-invalid), by reason."""
    total = d.n + len(d.skipped)
    rows = [Source(p.path, p.line or 0) for p in d.skipped]
    return Finding(
        "invalid_rows", "warning",
        f"{plural(len(d.skipped), 'invalid row was', 'invalid rows were')} skipped (not "
        "audited): "
        + ", ".join(f"{why} ({k})" for why, k in summarize_problems(d.skipped)[:4]) + ".",
        len(d.skipped),
        total, "Fix them or drop them on purpose; train stops on them unless --skip-invalid.",
        examples=[Example(src, snippet(f"[{p.field}] {p.message}" if p.field else p.message))
                  for src, p in zip(rows[:5], d.skipped[:5], strict=True)],
        rows=rows)


def size_lever(d: AuditData) -> LeverReport:
    n = d.n
    wc = d.word_counts
    unique_prompts = len(d.prompt_groups)
    stats: dict = {
        "rows": n, "unique_instructions": len(d.instruction_groups),
        "unique_prompts": unique_prompts,
        "unique_rows": len(set(zip(d.instructions, d.inputs, d.outputs, strict=True))),
        "skipped_invalid": len(d.skipped),
        "words_total": sum(a + b + c for a, b, c in wc),
        "words_per_row": _dist([a + b + c for a, b, c in wc]),
        "instruction_words": _dist([a for a, _, _ in wc]),
        "input_words": _dist([b for _, b, _ in wc]),
        "output_words": _dist([c for _, _, c in wc]),
    }
    if d.tokens is not None:
        lengths = list(d.tokens.lengths)
        stats |= {"tokens_total": sum(lengths), "tokens_per_row": _dist(lengths),
                  "rows_fitting_max_length": len(lengths),
                  "trained_tokens_total": sum(d.tokens.trained)}
    severity, scale, advice = _scale(unique_prompts)
    dup_note = (f"; {n:,} rows, but only {plural(unique_prompts, 'distinct prompt')}"
                if unique_prompts < 0.95 * n else "")
    findings = [Finding("size_scale", severity, f"Size: {scale}{dup_note}.", unique_prompts,
                        max(n, 1), f"{advice} (A prompt is the instruction and input; rows that "
                        "repeat one count once.)",
                        stats={"rows": n, "unique_prompts": unique_prompts})]
    if d.skipped:
        findings.append(invalid_rows(d))
    words = stats["words_per_row"]["median"]
    tokens = ""
    if d.tokens is not None:  # token counts exist only for rows that fit --max-length
        kept = len(d.tokens.lengths)
        tokens = f", median {stats['tokens_per_row']['median']:.0f} tokens per row" + (
            f" of the {plural(kept, 'row')} that fit --max-length {d.tokens.max_length:,}"
            if kept < n else "")
    skipped = f" {plural(len(d.skipped), 'invalid row')} skipped." if d.skipped else ""
    # The scale names the distinct prompts; the verdict adds what it doesn't say.
    verdict = f"{plural(n, 'row')}, median {words:.0f} words per row{tokens}: {scale}.{skipped}"
    return LeverReport("size", verdict, findings, stats, limits=(
        "Counts rows, not information: a thousand near-identical rows teach less than a hundred "
        "varied ones, which is what the diversity levers measure."))
