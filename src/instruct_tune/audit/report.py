"""`instruct-tune audit`: measure the four levers of instruction-tuning data quality (+ contamination).

Python API:
    report = audit(records, tokenizer=tok, eval_records=held_out)
    report["output_quality"].findings, report.errors, report.to_dict()
The CLI loads the files, calls `audit`, and prints the report (rich, or one JSON object).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..data.records import Record
from ..errors import InstructTuneError, Problem
from .contamination import contamination_lever, not_checked
from .context import AuditData, TokenStats
from .diversity import task_diversity_lever
from .findings import AuditReport
from .phrasing import phrasing_lever
from .quality import quality_lever
from .size import size_lever


def token_stats(records, tokenizer, template, max_length: int,
                context: int | None = None) -> TokenStats:
    from ..data.tokenize import build_examples

    result = build_examples(records, tokenizer, template, max_length=max_length,
                            truncation="drop", cache_dir="none")
    return TokenStats(result.lengths.tolist(), result.trained.tolist(), list(result.dropped),
                      max_length, context)


def audit(records: Sequence[Record], *, tokenizer=None, template=None, max_length: int = 2048,
          eval_records: Sequence[Record] | None = None, skipped: Sequence[Problem] = (),
          context: int | None = None, progress=None) -> AuditReport:
    """Audit `records` on size, task diversity, phrasing diversity, output quality and (with
    `eval_records`) contamination. With a tokenizer, token counts and --max-length truncation
    use the real template and tokenizer (`template`: a Template or name, default alpaca);
    `context`, the model's context length (models.context_length), lets the advice on rows over
    --max-length say whether a larger --max-length can fit them.

    `progress(step_name)` is called before each stage (the CLI uses it for a status line).
    """
    records = list(records)
    if not records:
        raise InstructTuneError("Nothing to audit: the data has no valid rows.")
    step = progress or (lambda name: None)
    d = AuditData(records, list(skipped))
    special: list[str] = []
    if tokenizer is not None:
        step("tokenizing with the model's tokenizer")
        d.tokens = token_stats(records, tokenizer, template, max_length, context)
        special = [t for t in getattr(tokenizer, "all_special_tokens", []) if t]
    levers = {}
    step("size")
    levers["size"] = size_lever(d)
    step("task diversity")
    levers["task_diversity"] = task_diversity_lever(d)
    step("phrasing diversity")
    levers["phrasing_diversity"] = phrasing_lever(d)
    step("output quality")
    levers["output_quality"] = quality_lever(d, special)
    if eval_records is not None:
        step("contamination")
        ev = list(eval_records)
        levers["contamination"] = contamination_lever(d, ev) if ev else not_checked()
    else:
        levers["contamination"] = not_checked()
    return AuditReport(levers, len(records))
