"""The generation eval after training: final/ vs the base model on --eval-data, written to
OUT/eval.json (the train command runs it; `train()` itself knows nothing about generation)."""

from __future__ import annotations

import json
from pathlib import Path

from ..config import TrainConfig
from ..errors import InstructTuneError
from ..train.progress import console


def generation_eval(cfg: TrainConfig, final: Path) -> dict | None:
    """Before/after generation eval of `final` on --eval-data; a failure here only warns: the
    trained model is already saved."""
    from ..data.load import load_records_report
    from .compare import evaluate
    from .report import print_report

    console.print("Evaluating generations on --eval-data (tuned vs base) ...")
    show = print_report
    try:
        if cfg.method != "sft":  # pairs: also the rewards against the starting model (preference.py)
            from ..data.pairs import load_pairs
            from .preference import evaluate_pairs
            from .preference_report import print_pair_report

            pairs = load_pairs(cfg.eval_data, columns=cfg.columns, skip_invalid=cfg.skip_invalid).records
            report = evaluate_pairs(final, pairs, compare=cfg.model, beta=cfg.beta,
                                    trust_remote_code=cfg.trust_remote_code,
                                    allow_pickle=cfg.allow_pickle, skip_invalid=True,
                                    progress=not cfg.quiet, max_new_tokens=cfg.eval_max_new_tokens)
            show = print_pair_report
        else:
            records = load_records_report(cfg.eval_data, format=cfg.format, columns=cfg.columns,
                                          skip_invalid=cfg.skip_invalid).records
            report = evaluate(final, records, compare=cfg.model,
                              trust_remote_code=cfg.trust_remote_code, allow_pickle=cfg.allow_pickle,
                              skip_invalid=True, progress=not cfg.quiet,
                              max_new_tokens=cfg.eval_max_new_tokens)
    except (InstructTuneError, RuntimeError, ValueError, OSError) as e:
        console.print(f"[yellow]warning:[/] generation eval failed ({e}). The model is saved; "
                      f"rerun it with: instruct-tune eval --model {final} --data {cfg.eval_data} "
                      f"--compare {cfg.model}")
        return None
    path = Path(final).parent / "eval.json"
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    if cfg.quiet:  # the summary line only; the full tables are in eval.json
        console.print(eval_summary(report))
    else:
        show(report)
    console.print(f"eval report written to {path}")
    return report


def eval_summary(report: dict) -> str:
    """'eval (40 records): stops 20.0% -> 95.0%, ROUGE-L 12.0% -> 40.0%, ...' for --quiet."""
    from .report import ROWS, fmt

    base = report.get("base") or {}
    parts = [f"{label.split(' (')[0]} " + (f"{fmt(k, base[k])} -> " if k in base else "")
             + fmt(k, report[k]) for k, (label, _, _) in ROWS.items() if k in report]
    return (f"eval ({report.get('n')} records{', base -> tuned' if base else ''}): "
            + ", ".join(parts))
