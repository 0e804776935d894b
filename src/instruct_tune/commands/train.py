"""`instruct-tune train`: the train stage, then, with --eval-data, the before/after generation
eval of final/ on those rows (tuned vs base, written to OUT/eval.json)."""

from __future__ import annotations

import gc

from ..config import TrainConfig
from ..outdir import TRAIN, guard, release


def preflight(cfg: TrainConfig) -> None:
    """Check --out and claim it before torch loads: a bad --out costs no loading, and a second
    run into the same --out is refused while this one lives (train() checks again, for API users)."""
    from ..data.mix import parse_spec  # --data a.jsonl,b.jsonl=...: guard each source

    inputs = [("--model", cfg.model)] + [("--data", s.path) for s in parse_spec(cfg.data)] \
        if cfg.overwrite else []
    guard(cfg.out, TRAIN, flag="--out", overwrite=cfg.overwrite, resume=cfg.resume, inputs=inputs)


def run(cfg: TrainConfig) -> int:
    """Exit 130 after Ctrl-C (the message says how to resume)."""
    try:
        return _run(cfg)
    finally:
        release(cfg.out)  # after --eval-data's eval.json: the run is done


def _run(cfg: TrainConfig) -> int:
    from accelerate import PartialState

    from ..evaluate.after_training import generation_eval
    from ..evaluate.during_training import GenerationCheck
    from ..train.loop import TrainingInterrupted
    from ..train.progress import console
    from ..train.run import train

    def check(records):  # generation checks at every eval (--eval-samples)
        return GenerationCheck.sample(records, cfg.eval_samples, cfg.seed,
                                      max_new_tokens=cfg.eval_max_new_tokens)

    try:
        final = train(cfg, generation_check=check)
    except TrainingInterrupted as e:
        console.print(f"[yellow]{e}[/]")
        return 130
    if not PartialState().is_main_process:
        return 0
    if cfg.eval_data:
        gc.collect()  # the training model, optimizer and batches are garbage now
        generation_eval(cfg, final)
    _write_report(cfg.out)
    return 0


def _write_report(out: str) -> None:
    """OUT/report.html (curves, generation checks, before/after); a failure only warns."""
    from ..errors import InstructTuneError
    from ..report import write_report
    from ..train.progress import console

    try:
        console.print(f"report: {write_report(out)}")
    except (InstructTuneError, OSError, ValueError) as e:
        console.print(f"[yellow]warning:[/] report.html not written ({e}); the run is saved. "
                      f"Write it with: instruct-tune report {out}")
