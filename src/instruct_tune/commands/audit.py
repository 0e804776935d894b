"""`instruct-tune audit DATA`: the four levers of the data (audit/ measures them)."""

from __future__ import annotations

import json
import sys
import time

from ..config import AuditConfig
from .tokenizer import tokenizer_for


def _load(path: str, cfg: AuditConfig):
    from ..data.load import load_records_report

    return load_records_report(path, format=cfg.format, columns=cfg.columns,
                               skip_invalid=cfg.skip_invalid)


def run(cfg: AuditConfig) -> int:
    from rich.console import Console

    from ..audit.render import render
    from ..audit.report import audit
    from ..data.pairs import is_preference_source

    if is_preference_source(cfg.data, cfg.columns):  # chosen/rejected pairs: commands/pairs.py
        from .pairs import audit_pairs

        return audit_pairs(cfg)
    err = Console(stderr=True, soft_wrap=True)
    t0 = time.perf_counter()
    with err.status("loading", spinner="dots") as status:
        loaded = _load(cfg.data, cfg)
        eval_records = None
        if cfg.eval_data:
            status.update(f"loading {cfg.eval_data}")
            eval_records = _load(cfg.eval_data, cfg).records
        tokenizer = template = context = None
        if cfg.model:
            from ..models import context_length

            status.update(f"loading tokenizer {cfg.model}")
            tokenizer, template, cfg = tokenizer_for(cfg, err.print)
            context = context_length(cfg.model, cfg.trust_remote_code)
        report = audit(loaded.records, tokenizer=tokenizer, template=template,
                       max_length=cfg.max_length, eval_records=eval_records,
                       skipped=loaded.skipped, context=context,
                       progress=lambda s: status.update(f"auditing: {s}"))
    for note in loaded.notes:  # e.g. a column that looks like the input but is not mapped
        err.print(note, markup=False, highlight=False)
    if cfg.json:
        json.dump(report.to_dict(), sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        render(report, Console(), source=cfg.data, seconds=time.perf_counter() - t0)
    return 1 if cfg.strict and report.errors else 0
