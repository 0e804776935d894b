"""`instruct-tune demo --levers`: how much each data lever moves the result, measured.

A controlled experiment on the demo's base model and tasks: every setting (levers_data.py) is
tuned from the same base model with the same budget, the same number of optimizer steps of the
same number of rows each, with the same lr schedule and seed, and evaluated on the same held-out
inputs and held-out phrasings. One lever changes at a time against the baseline; a smaller set
is simply repeated more often in those steps. Training and evaluation are the project's own
train() and evaluate() calls, as in the demo.

    OUT/data/<setting>.jsonl     what each setting trained on (+ the two held-out sets)
    OUT/train/<setting>/final    each tuned model
    OUT/eval/<setting>/<split>.json, OUT/eval/levers.png
    OUT/report.json ("levers"), OUT/report.md, OUT/report.html
"""

from __future__ import annotations

import json
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console

from ..config import DemoConfig, TrainConfig
from ..outdir import release
from . import tasks
from .base_model import FAST, FULL, BaseSpec
from .levers_data import Setting, settings
from .levers_report import figure, print_report, summarize, write_reports

console = Console()
POOL = 5  # the pool holds 5x the baseline's rows per task: enough for every setting's cut
SPLITS = ("heldout_inputs", "heldout_phrasings")


@dataclass(frozen=True)
class LeversPlan:
    """Everything that makes the experiment longer or shorter."""

    base: BaseSpec
    per_task: int  # baseline training rows per task type (fact tasks have fewer distinct rows)
    eval_per_task: int  # rows per task in each held-out set
    steps: int  # optimizer steps of every run: the shared budget
    lr: float
    batch_size: int  # rows per optimizer step (packed into sequences of max_length)
    max_length: int
    max_new_tokens: int
    eval_batch_size: int = 64


# Sized to fit 10 and 3 minutes on 2 cores with the base model cached (README, "What the demo
# does", has the measured times). 600 steps is ~6.7 epochs of the full baseline (the demo itself
# trains 12): enough to move held-out exact match well off zero, short enough for 7 runs. The
# fast base model stops before it can copy words, so --fast shows the pipeline, not the levers.
LEVERS_FULL = LeversPlan(FULL, per_task=300, eval_per_task=10, steps=600, lr=2e-3, batch_size=36,
                         max_length=256, max_new_tokens=32)
LEVERS_FAST = LeversPlan(FAST, per_task=120, eval_per_task=6, steps=400, lr=3e-3, batch_size=18,
                         max_length=128, max_new_tokens=24)


@contextmanager
def _clock(into: dict, name: str):
    """Wall-clock and CPU seconds (this process, all threads), as the demo's Timings records."""
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    into[name] = {"wall_s": round(time.perf_counter() - wall, 2),
                  "cpu_s": round(time.process_time() - cpu, 2)}


def _base_model(cfg: DemoConfig, plan: LeversPlan) -> tuple[str, float, str, dict]:
    """(model directory, lr, precision, what the report says about it): as the demo picks them."""
    from ..hardware import preferred_precision, training_device
    from ..models import parameter_count
    from .base_model import build_base_model
    from .run import user_model_lr

    if cfg.model:
        params = parameter_count(cfg.model)
        return (cfg.model, user_model_lr(params), preferred_precision(training_device()),
                {"model": cfg.model, "local": False, "params": params})
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as progress:
        path, cached = build_base_model(plan.base, progress=progress)
    info = json.loads((path / "demo_base.json").read_text())
    return (str(path), plan.lr, "fp32", {"model": str(path), "local": True, "cached": cached,
                                         "params": info["params"]})


def _run(s: Setting, out: Path, base_dir: str, lr: float, precision: str, plan: LeversPlan,
         seed: int, heldout: dict[str, list], clocks: dict) -> dict:
    """Tune on one setting's rows, then answer both held-out sets (the baseline's run also has
    the base model answer them, for the untuned row of the table)."""
    from ..evaluate.compare import evaluate
    from ..train.run import train

    data = tasks.write_jsonl(s.records, out / "data" / f"{s.name}.jsonl")
    run = out / "train" / s.name
    with _clock(clocks, "train"):
        final = train(TrainConfig(
            model=base_dir, data=str(data), out=str(run), max_steps=plan.steps, lr=lr,
            precision=precision, batch_size=plan.batch_size, max_length=plan.max_length,
            packing=True, warmup_ratio=0.05, seed=seed, log_every=max(1, plan.steps // 4),
            save_every=0, keep_checkpoints=1, eval_every=0, quiet=True))
        release(run)  # train() holds its --out until it is told the run is over
        # Nothing resumes these runs: final/ is all that is used, the optimizer state is not.
        shutil.rmtree(run / "checkpoints", ignore_errors=True)
    evals = {}
    with _clock(clocks, "eval"):
        for split, records in heldout.items():
            report = evaluate(final, records, compare=base_dir if s.name == "baseline" else None,
                              max_new_tokens=plan.max_new_tokens, batch_size=plan.eval_batch_size,
                              samples=0)
            (out / "eval" / s.name).mkdir(parents=True, exist_ok=True)
            (out / "eval" / s.name / f"{split}.json").write_text(json.dumps(report, indent=2) + "\n")
            evals[split] = report
    return evals


def levers(cfg: DemoConfig, out: Path, plan: LeversPlan | None = None) -> dict:
    """Run the experiment into `out` (already claimed by demo()); return report.json's content."""
    from .run import _set_threads

    plan = plan or (LEVERS_FAST if cfg.fast else LEVERS_FULL)
    _set_threads()
    timings: dict[str, dict] = {}
    started, started_cpu = time.perf_counter(), time.process_time()
    console.rule("[bold]base model")
    with _clock(timings, "base model"):
        base_dir, lr, precision, base_info = _base_model(cfg, plan)
    params = f"{base_info['params']:,}" if base_info["params"] else "?"
    console.print(f"Base model: {base_dir} ({params} parameters)", highlight=False)
    with _clock(timings, "data and curate"):
        splits = tasks.build(cfg.seed, POOL * plan.per_task, plan.eval_per_task)
        heldout = {name: splits[name] for name in SPLITS}
        for name, records in heldout.items():
            tasks.write_jsonl(records, out / "data" / f"{name}.jsonl")
        runs = settings(splits["train"], [r for s in SPLITS for r in heldout[s]], plan.per_task,
                        cfg.seed)
    results = []
    for k, s in enumerate(runs, 1):
        console.rule(f"[bold]{k}/{len(runs)}  {s.label}  ({len(s.records):,} rows, "
                     f"{plan.steps} steps)")
        clocks: dict[str, dict] = {}
        evals = _run(s, out, base_dir, lr, precision, plan, cfg.seed, heldout, clocks)
        results.append(summarize(s, evals, plan.steps * plan.batch_size, clocks))
        if s.name == "baseline":
            base_row = summarize(s, {n: r["base"] for n, r in evals.items()}, 0, {})
            results.insert(0, {**base_row, "name": "base", "lever": "base", "rows": 0,
                               "label": "base model, not tuned"})
        timings[s.name] = {k: round(clocks["train"][k] + clocks["eval"][k], 2)
                           for k in ("wall_s", "cpu_s")}
    with _clock(timings, "report"):
        result = {"config": asdict(cfg), "plan": asdict(plan), "base_model": base_info,
                  "levers": {"budget": {"steps": plan.steps, "rows_per_step": plan.batch_size,
                                        "lr": lr, "schedule": "cosine, 5% warmup",
                                        "seed": cfg.seed},
                             "settings": results}}
        png = figure(results, out / "eval" / "levers.png")
        result["levers"]["figure"] = png and str(png.relative_to(out))
    result.update(timings=timings, total_wall_s=round(time.perf_counter() - started, 1),
                  total_cpu_s=round(time.process_time() - started_cpu, 1))
    write_reports(out, result)
    from ..report import write_report

    write_report(out)  # report.html: its levers section (report/levers.py) reads report.json
    print_report(console, result)
    return result


__all__ = ["LEVERS_FAST", "LEVERS_FULL", "LeversPlan", "levers"]
