"""`instruct-tune inspect DATA --model M`: see exactly what training will see (data/inspect.py
renders it)."""

from __future__ import annotations

import json
import sys

from ..config import InspectConfig
from .tokenizer import tokenizer_for


def run(cfg: InspectConfig) -> int:
    from rich.console import Console
    from rich.text import Text

    from ..data.inspect import (
        CLOSE,
        DEFAULT_ROWS,
        OPEN,
        PROMPT_STYLE,
        SPECIAL_STYLE,
        TRAINED_STYLE,
        _special_names,
        render_example,
        summary,
    )
    from ..data.load import load_records_report
    from ..data.pairs import is_preference_source
    from ..data.tokenize import build_examples

    if is_preference_source(cfg.data, cfg.columns):  # chosen/rejected pairs: commands/pairs.py
        from .pairs import inspect_pairs

        return inspect_pairs(cfg)
    loaded = load_records_report(cfg.data, format=cfg.format, columns=cfg.columns,
                                 skip_invalid=cfg.skip_invalid)
    warn = Console(stderr=True, highlight=False).print
    for note in loaded.notes:  # e.g. a column that looks like the input but is not mapped
        warn(note, markup=False)
    tokenizer, template, cfg = tokenizer_for(cfg, warn)
    result = build_examples(loaded.records, tokenizer, template, max_length=cfg.max_length,
                            truncation=cfg.truncation, cache_dir=cfg.cache_dir)
    n = cfg.n if cfg.n is not None else (0 if cfg.json else DEFAULT_ROWS)
    shown = result.examples if n <= 0 else result.examples[:n]
    out = Console(soft_wrap=True, highlight=False)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    if cfg.json:
        by_source = {(r.source.path, r.source.line): r for r in loaded.records}
        for ex in shown:
            rec = by_source[(ex.source.path, ex.source.line)]
            row = {"source": str(ex.source), "line": ex.source.line, "input_ids": ex.input_ids,
                   "labels": ex.labels, "text": template.render_text(rec, tokenizer.eos_token),
                   "num_tokens": len(ex.input_ids), "num_trained": ex.num_trained}
            sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
        err.print(summary(loaded.records, loaded.skipped, result, template, tokenizer, cfg.max_length,
                          cfg.truncation))
        return 0
    specials = _special_names(tokenizer, template)
    marks = out.no_color or not out.is_terminal  # colour is the only other boundary
    for ex in shown:
        n_trained = ex.num_trained
        out.print(f"── {ex.source} · {len(ex.input_ids)} tokens "
                  f"(prompt {len(ex.input_ids) - n_trained}, trained {n_trained})", style="bold")
        out.print(render_example(ex, tokenizer, specials, marks))
    out.print("── summary", style="bold")
    trained = f"{OPEN}trained{CLOSE}" if marks else "trained"
    out.print(Text.assemble(("prompt", PROMPT_STYLE), " · ", (trained, TRAINED_STYLE), " · ",
                            ("⟨special⟩", SPECIAL_STYLE)))
    out.print(summary(loaded.records, loaded.skipped, result, template, tokenizer, cfg.max_length,
                      cfg.truncation))
    return 0
