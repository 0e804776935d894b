"""`inspect`, `audit` and `eval` when DATA is a preference file (chosen/rejected pairs).

Each command module hands over here when `is_preference_source(DATA)`; like them, this module is
cheap to import and imports its stages inside each function. Same options, same output style.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable

from ..config import AuditConfig, EvalConfig, InspectConfig
from ..errors import ConfigError
from .tokenizer import tokenizer_for


def _load(path: str, cfg, warn: Callable[[str], None]):
    """load_pairs with the command's --format/--columns/--skip-invalid; notes and skipped rows said."""
    from ..data.pairs import load_pairs

    loaded = load_pairs(path, format=cfg.format, columns=cfg.columns, skip_invalid=cfg.skip_invalid)
    for note in loaded.notes:  # e.g. a column that looks like the input but is not mapped
        warn(note)
    return loaded


def inspect_pairs(cfg: InspectConfig) -> int:
    from rich.console import Console
    from rich.text import Text

    from ..data.inspect import (
        CLOSE,
        DEFAULT_ROWS,
        OPEN,
        PROMPT_STYLE,
        TRAINED_STYLE,
        _special_names,
    )
    from ..data.pair_inspect import REJECTED_STYLES, pair_json, pair_summary, render_pair
    from ..data.pair_tokenize import build_pairs

    err = Console(stderr=True, highlight=False, soft_wrap=True)
    loaded = _load(cfg.data, cfg, lambda m: err.print(m, markup=False))
    tokenizer, template, cfg = tokenizer_for(cfg, err.print)
    result = build_pairs(loaded.records, tokenizer, template, max_length=cfg.max_length,
                         cache_dir=cfg.cache_dir)
    n = cfg.n if cfg.n is not None else (0 if cfg.json else DEFAULT_ROWS)
    shown = result.examples if n <= 0 else result.examples[:n]
    summary = pair_summary(len(loaded.records), loaded.skipped, result, template, tokenizer,
                           cfg.max_length)
    if cfg.json:
        for pair in shown:
            sys.stdout.write(json.dumps(pair_json(pair, tokenizer), ensure_ascii=False) + "\n")
        err.print(summary)
        return 0
    out = Console(soft_wrap=True, highlight=False)
    specials = _special_names(tokenizer, template)
    marks = out.no_color or not out.is_terminal  # colour is the only other boundary
    for pair in shown:
        out.print(f"── {pair.source} · prompt {len(pair.prompt_ids)} tokens · chosen "
                  f"{len(pair.chosen_ids)} · rejected {len(pair.rejected_ids)}", style="bold")
        prompt, chosen, rejected = render_pair(pair, tokenizer, specials, marks)
        out.print(prompt, end="" if prompt.plain.endswith("\n") else "\n")
        out.print(Text("✓ chosen (log-prob raised)", TRAINED_STYLE))
        out.print(chosen)
        out.print(Text("✗ rejected (log-prob lowered)", REJECTED_STYLES[0]))
        out.print(rejected)
    out.print("── summary", style="bold")
    scored = f"{OPEN}answer{CLOSE}" if marks else "answer"
    out.print(Text.assemble(("prompt (shared, not trained)", PROMPT_STYLE), " · ",
                            (f"chosen {scored}", TRAINED_STYLE), " · ",
                            (f"rejected {scored}", REJECTED_STYLES[0])))
    out.print(summary)
    return 0


def _eval_records(path: str, cfg) -> list:
    """--eval-data as records: an SFT file as is, a preference file as prompt + chosen answer."""
    from ..data.load import load_records_report
    from ..data.pairs import is_preference_source, load_pairs

    if is_preference_source(path, cfg.columns):
        return [p.record("chosen") for p in load_pairs(path, format=cfg.format, columns=cfg.columns,
                                                       skip_invalid=cfg.skip_invalid).records]
    columns = None if is_preference_source(cfg.data, cfg.columns) else cfg.columns
    return load_records_report(path, format=cfg.format, columns=columns,
                               skip_invalid=cfg.skip_invalid).records


def audit_pairs(cfg: AuditConfig) -> int:
    from rich.console import Console

    from ..audit.pairs import audit_pairs as audit
    from ..audit.render import render

    err = Console(stderr=True, soft_wrap=True)
    t0 = time.perf_counter()
    notes: list[str] = []
    with err.status("loading", spinner="dots") as status:
        loaded = _load(cfg.data, cfg, notes.append)
        eval_records = None
        if cfg.eval_data:
            status.update(f"loading {cfg.eval_data}")
            eval_records = _eval_records(cfg.eval_data, cfg)
        tokenizer = template = None
        if cfg.model:
            status.update(f"loading tokenizer {cfg.model}")
            tokenizer, template, cfg = tokenizer_for(cfg, err.print)
        report = audit(loaded.records, tokenizer=tokenizer, template=template,
                       max_length=cfg.max_length, eval_records=eval_records,
                       skipped=loaded.skipped, progress=lambda s: status.update(f"auditing: {s}"))
    for note in notes:
        err.print(note, markup=False, highlight=False)
    if cfg.json:
        json.dump(report.to_dict(), sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        render(report, Console(), source=f"{cfg.data} (preference pairs)",
               seconds=time.perf_counter() - t0)
    return 1 if cfg.strict and report.errors else 0


def eval_pairs(cfg: EvalConfig) -> int:
    """Rewards against --compare (the reference) and generation on the chosen answers."""
    from ..evaluate.generate import err
    from ..evaluate.preference import evaluate_pairs
    from ..evaluate.preference_report import NO_REFERENCE, print_pair_report
    from .eval import emit

    if cfg.few_shot:
        raise ConfigError("--few-shot is a baseline for supervised tuning; on preference pairs the "
                          "baseline is --compare, the model preference tuning started from.")
    loaded = _load(cfg.data, cfg, lambda m: err.print(m, markup=False, highlight=False))
    if loaded.skipped:
        err.print(f"[yellow]warning:[/] skipped {len(loaded.skipped)} invalid pair(s) in "
                  f"{cfg.data}; first: {loaded.skipped[0]}")
    if cfg.compare is None and cfg.json:  # the table says it too
        err.print(f"note: {NO_REFERENCE}", highlight=False)
    report = evaluate_pairs(cfg.model, loaded.records, compare=cfg.compare, beta=cfg.beta,
                            template=cfg.template, max_new_tokens=cfg.max_new_tokens,
                            temperature=cfg.temperature, top_p=cfg.top_p,
                            batch_size=cfg.batch_size, samples=cfg.samples,
                            trust_remote_code=cfg.trust_remote_code, allow_pickle=cfg.allow_pickle,
                            skip_invalid=cfg.skip_invalid, progress=not cfg.json)
    return emit(cfg, report, print_pair_report)
