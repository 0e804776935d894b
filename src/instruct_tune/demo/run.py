"""`instruct-tune demo`: the whole story of instruction tuning, offline, on a laptop CPU.

    1 base model    a small Llama pretrained here on plain text (cached), or --model yours
    2 data          built-in verifiable tasks -> OUT/data/{train,heldout_inputs,heldout_phrasings}.jsonl
    3 audit         the audit command's verdict on the training set
    4 tuning        the project's trainer (full fine-tuning, packing on) -> OUT/train/final
    5 evaluation    base (zero-shot and 3-shot) vs tuned on both held-out sets (the eval command's API)
    6 preference    DPO after supervised tuning, on pairs from the tuned model's own answers, and
                    a control (supervised tuning continued on the same chosen answers), prefer.py
                    -> OUT/prefer/final; the three side by side on both held-out sets
    7 report        OUT/report.json, OUT/report.md, OUT/report.html, OUT/loss_curve.png, timings

`demo(cfg, plan)` is the Python API (tests pass a smaller plan); commands/demo.py the CLI entry.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from ..config import DemoConfig, TrainConfig
from ..evaluate.during_training import GenerationCheck
from ..hardware import preferred_precision, training_device
from ..models import parameter_count
from ..outdir import DEMO, guard, prepare, release
from . import tasks
from .base_model import FAST, FULL, BaseSpec, build_base_model
from .prefer import PreferPlan
from .report import (
    eval_table,
    pick_samples,
    plot_losses,
    prefer_table,
    print_timings,
    samples_table,
    write_reports,
)

console = Console()


@dataclass(frozen=True)
class DemoPlan:
    """Everything that makes the demo longer or shorter."""

    base: BaseSpec
    train_per_task: int
    eval_per_task: int
    epochs: float
    lr: float  # for the local base model; --model gets one for its size (user_model_lr)
    batch_size: int  # rows per step (packed into sequences of max_length)
    max_length: int  # packed sequence length
    max_new_tokens: int  # enough for the longest answer; the base model runs on to this limit
    eval_batch_size: int = 64
    few_shot: int = 3  # the base model also answers after this many worked examples (0: not)
    prefer: PreferPlan | None = None  # the preference stage (None: skipped)


FULL_PLAN = DemoPlan(FULL, train_per_task=300, eval_per_task=10, epochs=12, lr=2e-3,
                     batch_size=36, max_length=256, max_new_tokens=32,
                     prefer=PreferPlan(prompts_per_task=600, epochs=1.5, lr_scale=0.3, batch_size=32))
FAST_PLAN = DemoPlan(FAST, train_per_task=120, eval_per_task=6, epochs=8, lr=3e-3,
                     batch_size=18, max_length=128, max_new_tokens=24,
                     prefer=PreferPlan(prompts_per_task=120, epochs=3, lr_scale=0.3, batch_size=32))
STAGES = 7


@dataclass
class Timings:
    """Wall-clock and CPU seconds (this process, all threads) per stage."""

    stages: dict[str, dict[str, float]] = field(default_factory=dict)

    @contextmanager
    def __call__(self, name: str, step: int):
        console.rule(f"[bold]{step}/{STAGES}  {name}")
        wall, cpu = time.perf_counter(), time.process_time()
        yield
        self.stages[name] = {"wall_s": round(time.perf_counter() - wall, 2),
                             "cpu_s": round(time.process_time() - cpu, 2)}


def user_model_lr(params: int | None) -> float:
    """Full fine-tuning lr for a --model of this size. 2e-5, the usual choice for 7B models (and
    the trainer's default), is far too small for the few steps of a demo on a small model; the
    stable lr grows roughly as 1/sqrt(size): 7B 2e-5, 1B 5e-5, 124M 1.5e-4, 1M 1.7e-3, capped at
    3e-3 (what the local ~1M-parameter base model tunes well with)."""
    if not params:
        return 2e-5
    return float(min(3e-3, max(1e-5, 2e-5 * (7e9 / params) ** 0.5)))


def _set_threads() -> None:
    """torch defaults to one thread per physical core; a ~1M-parameter model gains nothing past a
    few, and oversubscribed threads on a busy laptop only spin."""
    import torch

    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, min(torch.get_num_threads(), 8)))


def _audit(train_path: Path, eval_paths: list[Path], base_dir: str) -> dict:
    """Audit the training set (and the held-out sets for contamination); print the verdicts."""
    from ..audit.findings import plural
    from ..audit.render import STATUS, TITLES
    from ..audit.report import audit
    from ..data.load import load_records
    from ..models import load_tokenizer

    held_out = [r for p in eval_paths for r in load_records(p)]
    report = audit(load_records(train_path), tokenizer=load_tokenizer(base_dir),
                   eval_records=held_out)
    for name, title in TITLES.items():
        if name not in report.levers:  # e.g. the preference-file levers
            continue
        lever = report[name]
        console.print(f"  {title:<20} {STATUS[lever.status]:<6} {escape(lever.verdict)}",
                      highlight=False)
    warnings = sum(f.severity == "warning" for f in report.findings)
    console.print(f"  {plural(len(report.errors), 'error')}, {plural(warnings, 'warning')}; "
                  f"all findings: instruct-tune audit {train_path} --eval-data "
                  f"{eval_paths[-1]}", highlight=False)
    return report.to_dict()


def demo(cfg: DemoConfig, plan: DemoPlan | None = None) -> dict:
    """Run the demo; return the report (also written to OUT/report.json)."""
    plan = plan or (FAST_PLAN if cfg.fast else FULL_PLAN)
    # The one output guard (..outdir); the CLI's preflight ran it before anything loaded.
    out = guard(cfg.out, DEMO, flag="--out", overwrite=cfg.overwrite)
    try:
        if cfg.levers:  # the levers experiment instead of the story (levers.py)
            from .levers import levers

            return levers(cfg, prepare(out, DEMO, overwrite=cfg.overwrite))
        return _demo(cfg, plan, prepare(out, DEMO, overwrite=cfg.overwrite))
    finally:
        release(out)


def _demo(cfg: DemoConfig, plan: DemoPlan, out: Path) -> dict:
    from ..data.load import load_records
    from ..evaluate.compare import evaluate, summary
    from ..train.run import train

    _set_threads()
    timings = Timings()
    started, started_cpu = time.perf_counter(), time.process_time()
    pretrain_losses = None

    with timings("base model", 1):
        if cfg.model:
            params = parameter_count(cfg.model)
            lr = user_model_lr(params)
            precision = preferred_precision(training_device())  # the check train makes
            base_dir, base_info = cfg.model, {"model": cfg.model, "local": False, "params": params}
            console.print(f"Using your base model {cfg.model} "
                          f"({f'{params:,} parameters' if params else 'size unknown'}; "
                          f"tuning lr {lr:g}, {precision}).", highlight=False)
        else:
            lr = plan.lr
            # Measured: at this size (hidden 128) bf16 autocast saves under 15% a step even with
            # AMX, and the plans' results were calibrated in fp32.
            precision = "fp32"
            from rich.progress import Progress

            with Progress(console=Console(stderr=True), transient=True) as progress:
                path, cached = build_base_model(plan.base, progress=progress)
            base_dir = str(path)
            base_info = {"model": base_dir, "local": True, "cached": cached,
                         **json.loads((path / "demo_base.json").read_text())}
            pretrain_losses = base_info.pop("losses", None)
            console.print(f"{'Reused' if cached else 'Pretrained'} the local base model "
                          f"({base_info['params']:,} parameters, pretraining loss "
                          f"{base_info['first_loss']:.2f} -> {base_info['final_loss']:.2f}): {base_dir}")

    with timings("data", 2):
        splits = tasks.build(cfg.seed, plan.train_per_task, plan.eval_per_task)
        files = {name: tasks.write_jsonl(recs, out / "data" / f"{name}.jsonl")
                 for name, recs in splits.items()}
        console.print(f"{len(tasks.TASKS)} task types; " + ", ".join(
            f"{name}: {len(recs)} rows" for name, recs in splits.items()) + f" -> {out / 'data'}")

    with timings("audit", 3):
        full_audit = _audit(files["train"], [files["heldout_inputs"], files["heldout_phrasings"]],
                            base_dir)
        (out / "audit.json").write_text(json.dumps(full_audit, indent=2) + "\n")

    with timings("tuning", 4):
        train_cfg = TrainConfig(model=base_dir, data=str(files["train"]), out=str(out / "train"),
                                epochs=plan.epochs, lr=lr, precision=precision,
                                batch_size=plan.batch_size, max_length=plan.max_length,
                                packing=True, warmup_ratio=0.05, seed=cfg.seed, log_every=5,
                                save_every=0, keep_checkpoints=1,
                                # generation checks while it learns: the stop-rate curve
                                eval_data=str(files["heldout_inputs"]), eval_every=100,
                                eval_max_new_tokens=plan.max_new_tokens)
        check = None

        def make_check(records):
            nonlocal check
            check = GenerationCheck.sample(records, train_cfg.eval_samples, cfg.seed,
                                           max_new_tokens=plan.max_new_tokens)
            return check

        final = train(train_cfg, generation_check=make_check)
        if check is not None:
            console.print(f"generation checks while tuning: {check.seconds:.1f} s", highlight=False)
        release(out / "train")  # train() holds its --out until it is told the run is over

    with timings("evaluation", 5):
        evals = {}
        for name in ("heldout_inputs", "heldout_phrasings"):
            console.print(f"Generating for {name} with the base and the tuned model ...")
            report = evaluate(final, load_records(files[name]), compare=base_dir,
                              max_new_tokens=plan.max_new_tokens, batch_size=plan.eval_batch_size,
                              samples=0, progress=True, few_shot=plan.few_shot,
                              shots=str(files["train"]))
            (out / "eval").mkdir(exist_ok=True)
            (out / "eval" / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
            evals[name] = report
        console.print(eval_table(evals))
        samples = pick_samples(evals["heldout_phrasings"])
        console.print(samples_table(samples))

    preference = None
    if plan.prefer and cfg.prefer:
        with timings("preference", 6):
            from .prefer import stage

            preference = stage(final, out, splits, {n: r["rows"] for n, r in evals.items()},
                               plan.prefer, lr=lr * plan.prefer.lr_scale,
                               max_new_tokens=plan.max_new_tokens,
                               eval_batch_size=plan.eval_batch_size, max_length=plan.max_length,
                               precision=precision, seed=cfg.seed, say=console.print)
            console.print(prefer_table(preference))

    with timings("report", 7):
        png = plot_losses(pretrain_losses, out / "train" / "metrics.jsonl", out / "loss_curve.png")
    result = {"config": asdict(cfg), "plan": asdict(plan), "base_model": base_info,
              "tuned_model": str(final), "tasks": len(tasks.TASKS),
              "rows": {name: len(recs) for name, recs in splits.items()},
              "audit": {k: {"status": v["status"], "verdict": v["verdict"]}
                        for k, v in full_audit.items()},
              "eval": {name: summary(r) for name, r in evals.items()}, "samples": samples,
              "preference": preference,
              "timings": timings.stages, "total_wall_s": round(time.perf_counter() - started, 1),
              "total_cpu_s": round(time.process_time() - started_cpu, 1)}
    write_reports(out, result, evals, png)
    from ..report import write_report

    write_report(out)  # report.html: the same run for a browser (curves, tables, samples, audit)
    print_timings(console, timings.stages, result["total_wall_s"])
    console.print(f"\nWritten to {out}: report.html, report.md, report.json, loss_curve.png, data/, eval/, "
                  f"train/final/ (the tuned model)"
                  + (", prefer/final/ (preference-tuned), prefer_control/" if preference else "")
                  + ". Try it:\n"
                  f"  instruct-tune generate --model {final} \"Reverse the order of these words.\" "
                  f"--input \"red cat sun\"\n  instruct-tune chat {final}", highlight=False)
    return result


__all__ = ["FAST_PLAN", "FULL_PLAN", "DemoPlan", "demo"]
