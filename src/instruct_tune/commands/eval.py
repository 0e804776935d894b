"""`instruct-tune eval MODEL --data EVAL [--compare BASE [--few-shot K [--shots FILE]]] [--json]
[--out FILE]` (or `--model`): before/after generation eval (evaluate/compare.py)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..config import EvalConfig
from ..errors import ConfigError


def preflight(cfg: EvalConfig) -> None:
    if cfg.out:  # a bad --out fails now, not after all the generation
        check_out_file(cfg.out)
    if cfg.few_shot:  # where the worked examples come from, known before any model loads
        from ..evaluate.fewshot import shots_source

        shots_source(cfg.model, cfg.shots)


def check_out_file(out: str) -> None:
    """Fail before any model loads if the report could not be written to `out` (a file path; its
    missing parent directories are created at the end). An existing file is replaced."""
    path = Path(out).expanduser()
    if out.endswith(("/", os.sep)) or path.is_dir():
        raise ConfigError(f"--out {out} is a directory; --out takes the report's file name, e.g. "
                          f"--out {path / 'eval.json'}.")
    if path.exists():
        try:
            with path.open("ab"):  # append mode: checks write permission without truncating
                pass
        except OSError as e:
            raise ConfigError(f"Cannot write --out {out}: {e.strerror}. Choose another path or "
                              "make the file writable.") from None
        return
    base = path.absolute().parent
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise ConfigError(f"Cannot write --out {out}: {base} is a file, so no directory can be "
                          "made inside it. Choose another --out.")
    try:
        fd, probe = tempfile.mkstemp(dir=base, prefix=".instruct-tune-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ConfigError(f"Cannot write --out {out}: cannot create files in {base} "
                          f"({e.strerror}). Choose a writable --out.") from None


def run(cfg: EvalConfig) -> int:
    from ..data.load import load_records_report
    from ..data.pairs import is_preference_source
    from ..evaluate.compare import evaluate
    from ..evaluate.generate import err, seed_sampler
    from ..evaluate.report import print_report

    preflight(cfg)
    seed_sampler(cfg.seed)
    if is_preference_source(cfg.data, cfg.columns):  # chosen/rejected pairs: commands/pairs.py
        from .pairs import eval_pairs

        return eval_pairs(cfg)
    loaded = load_records_report(cfg.data, format=cfg.format, columns=cfg.columns,
                                 skip_invalid=cfg.skip_invalid)
    for note in loaded.notes:  # e.g. a column that looks like the input but is not mapped
        err.print(note, markup=False, highlight=False)
    if loaded.skipped:
        err.print(f"[yellow]warning:[/] skipped {len(loaded.skipped)} invalid row(s) in {cfg.data}; "
                  f"first: {loaded.skipped[0]}")
    report = evaluate(cfg.model, loaded.records, compare=cfg.compare, template=cfg.template,
                      max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
                      batch_size=cfg.batch_size, samples=cfg.samples,
                      trust_remote_code=cfg.trust_remote_code, allow_pickle=cfg.allow_pickle,
                      skip_invalid=cfg.skip_invalid, progress=not cfg.json,
                      few_shot=cfg.few_shot, shots=cfg.shots)
    return emit(cfg, report, print_report)


def emit(cfg: EvalConfig, report: dict, show: Callable[[dict], None]) -> int:
    """Print the report (`show` it, or JSON with --json), then write --out."""
    from ..evaluate.generate import err

    # Print first: should writing --out still fail (disk full), the results are not lost.
    if cfg.json:  # the whole report, per-row generations included, as --out writes it
        print(json.dumps(report, ensure_ascii=False))
    else:
        show(report)
    if cfg.out:
        out = Path(cfg.out).expanduser()
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        except OSError as e:
            raise ConfigError(f"Could not write the report to --out {cfg.out}: {e.strerror}. "
                              "The scores are printed above.") from None
        if not cfg.json:
            err.print(f"report written to {cfg.out}")
    return 0
