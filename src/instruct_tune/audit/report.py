"""`instruct-tune audit`: measure the four levers of instruction-tuning data quality (+ contamination).

Python API:
    report = audit(records, tokenizer=tok, eval_records=held_out)
    report["output_quality"].findings, report.errors, report.to_dict()
The CLI loads the files, calls `audit`, and prints the report (rich, or one JSON object).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ..config import AuditConfig
from ..data.records import Record
from ..errors import InstructTuneError, Problem
from .contamination import contamination_lever, not_checked
from .context import AuditData, TokenStats
from .diversity import task_diversity_lever
from .findings import AuditReport
from .phrasing import phrasing_lever
from .quality import quality_lever
from .size import size_lever


def _token_stats(records, tokenizer, template, max_length: int) -> TokenStats:
    from ..data.tokenize import build_examples

    result = build_examples(records, tokenizer, template, max_length=max_length,
                            truncation="drop", cache_dir="none")
    return TokenStats([len(e) for e in result.examples], [e.num_trained for e in result.examples],
                      list(result.dropped), max_length)


def audit(records: Sequence[Record], *, tokenizer=None, template=None, max_length: int = 2048,
          eval_records: Sequence[Record] | None = None, skipped: Sequence[Problem] = (),
          progress=None) -> AuditReport:
    """Audit `records` on size, task diversity, phrasing diversity, output quality and (with
    `eval_records`) contamination. With a tokenizer, token counts and --max-length truncation
    use the real template and tokenizer (`template`: a Template or name, default alpaca).

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
        d.tokens = _token_stats(records, tokenizer, template, max_length)
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


def _load(path: str, cfg: AuditConfig):
    from ..data.load import load_records_report

    return load_records_report(path, format=cfg.format, columns=cfg.columns,
                               skip_invalid=cfg.skip_invalid)


def run(cfg: AuditConfig) -> int:
    from rich.console import Console

    from .render import render

    if not cfg.data:
        raise InstructTuneError("audit: give a data file, e.g. `instruct-tune audit data.jsonl`.")
    if cfg.max_length < 2:
        raise InstructTuneError(f"--max-length must be >= 2 (got {cfg.max_length}).")
    if cfg.model and cfg.template != "model" and Path(cfg.template).suffix not in (".jinja", ".j2"):
        from ..data.templates import get_template

        get_template(cfg.template)  # a typo fails before the data is read
    err = Console(stderr=True, soft_wrap=True)
    t0 = time.perf_counter()
    with err.status("loading", spinner="dots") as status:
        loaded = _load(cfg.data, cfg)
        eval_records = None
        if cfg.eval_data:
            status.update(f"loading {cfg.eval_data}")
            eval_records = _load(cfg.eval_data, cfg).records
        tokenizer = template = None
        if cfg.model:
            from ..data.templates import get_template
            from ..models import fit_max_length, load_tokenizer

            status.update(f"loading tokenizer {cfg.model}")
            tokenizer = load_tokenizer(cfg.model, trust_remote_code=cfg.trust_remote_code)
            cfg = dataclasses.replace(cfg, max_length=fit_max_length(
                cfg.max_length, cfg.model, lambda m: err.print(f"[yellow]warning:[/] {m}"),
                cfg.trust_remote_code))
            template = get_template(cfg.template, tokenizer)
        report = audit(loaded.records, tokenizer=tokenizer, template=template,
                       max_length=cfg.max_length, eval_records=eval_records,
                       skipped=loaded.skipped, progress=lambda s: status.update(f"auditing: {s}"))
    for note in loaded.notes:  # e.g. a column that looks like the input but is not mapped
        err.print(note, markup=False, highlight=False)
    if cfg.json:
        json.dump(report.to_dict(), sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        render(report, Console(), source=cfg.data, seconds=time.perf_counter() - t0)
    return 1 if cfg.strict and report.errors else 0
