"""Training: check everything that can fail cheaply, prepare data and model, run the loop
(loop.py), save final/.

    train(cfg) -> Path     the Python API; returns DIR/final

The `instruct-tune train` command (train, then the generation eval on --eval-data) is
commands/train.py.

Distributed: the same command runs under `torchrun --nproc-per-node N -m instruct_tune.cli train`
or `accelerate launch -m instruct_tune.cli train ...` (DDP). FSDP comes from the accelerate config
(`accelerate config`), not from flags here. DeepSpeed is refused for now (see train()).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path

from ..config import TrainConfig, check, parse_duration
from ..hardware import check_precision, training_device
from ..models import fit_max_length
from .checkpoint import PLANNED_STEPS, check_resume, replan_schedule, restore
from .loop import Run, TrainState, train_loop
from .outdir import MetricsLog, check_output_dir, create_output_dir, write_config
from .progress import TrainProgress, console
from .schedule import lr_factor
from .setup import Setup, accelerator_for, build, free_space_warning

# Options that may change between a run and its --resume; anything else must match config.yaml.
RESUMABLE_CHANGES = {"resume", "overwrite", "quiet", "log_every", "save_every", "keep_checkpoints",
                     "eval_every", "max_time", "max_steps", "epochs", "cache_dir", "out",
                     "eval_max_new_tokens", "eval_samples", "allow_slow_bf16", "report_to"}


def resolve(cfg: TrainConfig) -> TrainConfig:
    """Check the options against each other and fill defaults that depend on others (lr)."""
    check(cfg)  # the CLI has checked (and printed the warnings) already; this is for API callers
    # The one bf16 check (hardware.py), also used by the benchmark and the demo.
    if slow := check_precision(cfg.precision, training_device(), cfg.allow_slow_bf16):
        console.print(f"[yellow]warning:[/] {slow}", highlight=False)
    lr = cfg.lr if cfg.lr is not None else (2e-4 if cfg.lora else 2e-5)
    if cfg.template is None:  # the model's own template (an instruct-tune run), else alpaca
        from ..data.templates import default_template

        cfg = dataclasses.replace(cfg, template=default_template(cfg.model))
    # Local paths become absolute so `--config DIR/config.yaml` works from any directory.
    paths = {k: str(Path(v).resolve()) for k in ("model", "data", "eval_data", "template")
             if (v := getattr(cfg, k)) and Path(v).exists()}
    # Rows past the model's context would crash; set here so config.yaml and --resume agree.
    max_length = fit_max_length(cfg.max_length, cfg.model, lambda m: console.print(
        f"[yellow]warning:[/] {m}"), cfg.trust_remote_code)
    return dataclasses.replace(cfg, lr=lr, out=str(Path(cfg.out).resolve()), max_length=max_length,
                               **paths)


def train(cfg: TrainConfig, generation_check: Callable | None = None) -> Path:
    """Fine-tune `cfg.model` on `cfg.data` and return the path of DIR/final.

    `generation_check(eval_records)`, when given (the train command passes
    evaluate.during_training.GenerationCheck.sample), makes the check run at every eval:
    check(model, tokenizer, template) -> (metrics to log, lines to show)."""
    from accelerate.utils import set_seed
    from transformers.utils import logging as hf_logging

    cfg = resolve(cfg)
    hf_logging.disable_progress_bar()  # ours is the only bar; weight loading is quick
    out = Path(cfg.out)
    check_output_dir(out, overwrite=cfg.overwrite, resume=cfg.resume)  # and claim it
    ckpt = check_resume(out, cfg, RESUMABLE_CHANGES) if cfg.resume else None
    acc = accelerator_for(cfg)
    main = acc.is_main_process
    say = console.print if main else (lambda *a, **k: None)
    set_seed(cfg.seed)
    s = build(cfg, acc, say)
    warn = free_space_warning(s, out)
    plan = s.plan

    # extra: the data's identity (checked on resume) and the step count the schedule is planned for.
    state = TrainState(extra={"examples": len(s.data.train), "tokens": sum(plan.lengths),
                              PLANNED_STEPS: plan.total_steps})
    if ckpt is not None:
        saved, was_planned = restore(acc, ckpt, state.extra,
                                     trainable=s.trainable if cfg.lora else None)
        state = TrainState(**{k: saved[k] for k in dataclasses.asdict(state)})
        state.extra[PLANNED_STEPS] = plan.total_steps
        if state.step >= plan.total_steps and (out / "final").is_dir():
            # Re-running would only save the same final/ again (and redo --eval-data's eval).
            say(f"Nothing to resume: {out} finished at step {state.step}/{plan.total_steps} and "
                f"its model is in {out / 'final'} (unchanged). To train longer, resume with a "
                "larger --max-steps or --epochs.")
            _end(s)
            return out / "final"
        say(f"Resuming from {ckpt} (step {state.step}/{plan.total_steps}).")
        if was_planned != plan.total_steps and state.step < plan.total_steps:
            say(replan_schedule(s.scheduler, ckpt, state.step, was_planned, plan.total_steps,
                                lambda was: _old_lr(cfg, state.step, was)))
    if main:
        create_output_dir(out, overwrite=cfg.overwrite, resume=cfg.resume)
        # Also on resume: config.yaml must hold the budget this run now has, so that
        # `--config DIR/config.yaml --resume` continues it rather than reading a stale one.
        write_config(out, cfg)
    acc.wait_for_everyone()

    say(_header(s))
    if warn:
        say(f"[yellow]warning:[/] {warn}")
    check = None
    if generation_check is not None and s.data.eval_records and cfg.eval_samples:
        check = generation_check(s.data.eval_records)
    reason = _run_loop(s, out, state, resumed=ckpt is not None, check=check)
    return _finish(s, out, state, reason)


def _run_loop(s: Setup, out: Path, state: TrainState, resumed: bool, check=None) -> str:
    from .final import checkpoint_files  # checkpoints are model directories too

    cfg, acc, data = s.cfg, s.accelerator, s.data
    progress = TrainProgress(s.plan.total_steps, state.step, enabled=acc.is_main_process,
                             quiet=cfg.quiet)
    metrics = MetricsLog(out / "metrics.jsonl", state.step if resumed else None,
                         enabled=acc.is_main_process)
    files = checkpoint_files(acc, s.model, data.tokenizer, data.template, data.stop_ids, out,
                             lora=cfg.lora, base=cfg.model, resized=bool(s.new_ids))
    r = Run(cfg, out, acc, s.model, s.optimizer, s.scheduler, s.plan, s.eval_plan, state, metrics,
            progress, parse_duration(cfg.max_time) if cfg.max_time else None, files,
            None if check is None else lambda model: check(model, data.tokenizer, data.template))
    try:
        return train_loop(r)
    finally:
        progress.close()
        metrics.close()


def _finish(s: Setup, out: Path, state: TrainState, reason: str) -> Path:
    """Save final/ and say how the run ended."""
    from .final import save_final

    cfg, acc, data, plan = s.cfg, s.accelerator, s.data, s.plan
    say = console.print if acc.is_main_process else (lambda *a, **k: None)
    acc.unwrap_model(s.model).config.use_cache = True  # off for gradient checkpointing only
    final = save_final(acc, s.model, data.tokenizer, data.template, data.stop_ids, out,
                       lora=cfg.lora, base=cfg.model, resized=bool(s.new_ids))
    why = {"time": f"--max-time {cfg.max_time} reached", "done": "done"}[reason]
    say(f"Trained {state.step} steps ({why}); model saved to {final}"
        + (f"; skipped {state.skipped_steps} non-finite steps" if state.skipped_steps else ""))
    if reason == "time" and state.step < plan.total_steps:
        say(f"[yellow]warning:[/] stopped at step {state.step}/{plan.total_steps} by --max-time; "
            f"the learning-rate schedule was planned for {plan.total_steps} steps (warmup "
            f"{s.warmup}), so it ended {'still warming up' if state.step < s.warmup else 'undecayed'}"
            " — set --max-steps to fit the schedule to your budget")
    _end(s)
    return final


def _end(s: Setup) -> None:
    """End the engine. The wrapped model (DDP's reducer, FSDP's state) holds the process group,
    so free it first: freed after the group, at exit, the group's destructor can abort the process
    ("terminate called without an active exception", exit code -6, after a finished run) or hang
    joining its gloo thread; both were seen, rarely, in 2-process test runs."""
    s.model = s.optimizer = s.scheduler = None
    s.accelerator.free_memory()  # accelerate's own references to them, then a gc pass
    s.accelerator.end_training()  # trackers, then the process group


def _old_lr(cfg: TrainConfig, step: int, was: int) -> float:
    """The lr at `step` of the schedule planned for `was` steps (for the re-plan notice)."""
    warmup = math.ceil(cfg.warmup_ratio * was)
    return cfg.lr * lr_factor(step - 1, warmup=warmup, total=was, kind=cfg.schedule)


def _header(s: Setup) -> str:
    cfg, acc, data, plan, n_train, n_all = s.cfg, s.accelerator, s.data, s.plan, s.n_train, s.n_all
    kind = f"LoRA r={cfg.lora_r} alpha={cfg.lora_alpha}" if cfg.lora else "full fine-tuning"
    batch = (f"{cfg.batch_size} x {cfg.grad_accum} accum x {acc.num_processes} proc = "
             f"{plan.rows_per_step} {'pairs' if cfg.method != 'sft' else 'rows'}/step")
    if cfg.packing:  # the same rows, laid out in fewer sequences
        batch += (f", packed into ~{plan.sequences_per_step():.1f} sequences of <= "
                  f"{cfg.max_length} tokens")
    from .loss import default_chunk
    from .memory import estimate

    vocab = getattr(acc.unwrap_model(s.model).config.get_text_config(), "vocab_size", 1)
    memory = estimate(acc.unwrap_model(s.model), plan, n_all=n_all, n_train=n_train,
                      checkpointing=cfg.gradient_checkpointing,
                      logits_rows=default_chunk(vocab, acc.device)).describe()
    lines = [f"[bold]instruct-tune train[/]: {cfg.model} ({kind}, {cfg.precision}, "
             f"{acc.num_processes} process(es) on {acc.device.type})", *data.report,
             f"batches: {batch}; "
             f"{plan.total_steps} steps ({plan.epochs_done(plan.total_steps):.2f} epochs"
             f"{f'; --max-steps {cfg.max_steps} overrides --epochs' if cfg.max_steps else ''}); "
             f"padding {plan.padding_share():.1%}",
             f"params: {n_train:,} trainable of {n_all:,} ({n_train / max(n_all, 1):.2%}); lr "
             f"{cfg.lr:g} {cfg.schedule}, warmup {s.warmup} steps", memory, *s.notes,
             f"out: {cfg.out} (checkpoint " + (f"every {cfg.save_every} steps and " if
                                               cfg.save_every else "") +
             f"at the end, keep {cfg.keep_checkpoints})"]
    if data.added_tokens:
        lines.append(f"added tokens {data.added_tokens} for template '{data.template.name}' "
                     "(embeddings resized; their rows are trained)")
    return "\n".join(lines)
