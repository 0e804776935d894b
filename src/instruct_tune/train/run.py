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
from pathlib import Path

import torch

from ..config import TrainConfig, check, parse_duration
from ..errors import ConfigError
from ..hardware import check_precision, training_device
from ..models import fit_max_length
from .checkpoint import PLANNED_STEPS, latest_checkpoint, load_checkpoint, only_trainable
from .loop import Run, TrainState, train_loop
from .outdir import (
    MetricsLog,
    check_free_space,
    check_output_dir,
    checkpoint_bytes,
    create_output_dir,
    write_config,
)
from .plan import Plan
from .prepare import load_data, load_model_for_training
from .progress import TrainProgress, console
from .schedule import lr_factor, make_scheduler
from .sharding import check_fsdp

# Options that may change between a run and its --resume; anything else must match config.yaml.
RESUMABLE_CHANGES = {"resume", "overwrite", "quiet", "log_every", "save_every", "keep_checkpoints",
                     "eval_every", "max_time", "max_steps", "epochs", "cache_dir", "out",
                     "eval_max_new_tokens", "allow_slow_bf16"}


def resolve(cfg: TrainConfig) -> TrainConfig:
    """Check the options against each other and fill defaults that depend on others (lr)."""
    check(cfg)  # the CLI has checked (and printed the warnings) already; this is for API callers
    # The one bf16 check (hardware.py), also used by the benchmark and the demo.
    if slow := check_precision(cfg.precision, training_device(), cfg.allow_slow_bf16):
        console.print(f"[yellow]warning:[/] {slow}", highlight=False)
    lr = cfg.lr if cfg.lr is not None else (2e-4 if cfg.lora else 2e-5)
    # Local paths become absolute so `--config DIR/config.yaml` works from any directory.
    paths = {k: str(Path(v).resolve()) for k in ("model", "data", "eval_data", "template")
             if (v := getattr(cfg, k)) and Path(v).exists()}
    # Rows past the model's context would crash; set here so config.yaml and --resume agree.
    max_length = fit_max_length(cfg.max_length, cfg.model, lambda m: console.print(
        f"[yellow]warning:[/] {m}"), cfg.trust_remote_code)
    return dataclasses.replace(cfg, lr=lr, out=str(Path(cfg.out).resolve()), max_length=max_length,
                               **paths)


def _check_resume(out: Path, cfg: TrainConfig) -> Path:
    ckpt = latest_checkpoint(out)
    if ckpt is None:
        raise ConfigError(f"--resume: no complete checkpoint in {out / 'checkpoints'} (the run "
                          "stopped before its first one). Start over with --overwrite.")
    saved_path = out / "config.yaml"
    if saved_path.is_file():
        import yaml

        saved = yaml.safe_load(saved_path.read_text()) or {}
        now = dataclasses.asdict(cfg)
        diff = [f"--{k.replace('_', '-')}: {saved[k]!r} -> {now[k]!r}" for k in saved
                if k in now and k not in RESUMABLE_CHANGES and saved[k] != now[k]]
        if diff:
            raise ConfigError(f"--resume with options that differ from {saved_path}:\n  " +
                              "\n  ".join(diff) + "\nResume with the original options "
                              f"(--config {saved_path} --resume), or start a new --out.")
    return ckpt


def train(cfg: TrainConfig) -> Path:
    """Fine-tune `cfg.model` on `cfg.data` and return the path of DIR/final."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState
    from accelerate.utils import set_seed
    from transformers.utils import logging as hf_logging

    cfg = resolve(cfg)
    hf_logging.disable_progress_bar()  # ours is the only bar; weight loading is quick
    out = Path(cfg.out)
    check_output_dir(out, overwrite=cfg.overwrite, resume=cfg.resume)
    ckpt = _check_resume(out, cfg) if cfg.resume else None
    # A second train() in one process (notebook, tests) may change the precision: accelerate keeps
    # it in a process-wide singleton, so drop that (not the distributed setup) first.
    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()
    # cpu=True on machines without an accelerator: accelerate then uses gloo under torchrun.
    acc = Accelerator(mixed_precision="bf16" if cfg.precision == "bf16" else "no",
                      step_scheduler_with_optimizer=False, cpu=not _has_accelerator())
    if acc.distributed_type.value == "DEEPSPEED":
        # accelerate's DeepSpeed engine steps inside backward(): that would bypass the NaN check
        # before each update and our token-normalized accumulation.
        raise ConfigError("DeepSpeed is not supported by instruct-tune's loop yet. Use FSDP "
                          "(`accelerate config` -> FSDP) or plain DDP.")
    check_fsdp(acc)  # asked for, but accelerate would silently run DDP (CPUs)
    main = acc.is_main_process
    say = console.print if main else (lambda *a, **k: None)
    set_seed(cfg.seed)

    data = load_data(cfg, say)
    model, new_ids = load_model_for_training(cfg, data.tokenizer)
    plan = Plan(data.train, batch_size=cfg.batch_size, grad_accum=cfg.grad_accum,
                world=acc.num_processes, packing=cfg.packing, max_length=cfg.max_length,
                seed=cfg.seed, epochs=cfg.epochs, max_steps=cfg.max_steps,
                pad_id=data.tokenizer.pad_token_id)
    eval_plan = None if not data.eval else Plan(
        data.eval, batch_size=cfg.batch_size, grad_accum=1, world=acc.num_processes,
        packing=False, max_length=cfg.max_length, seed=cfg.seed, epochs=1, max_steps=None,
        pad_id=data.tokenizer.pad_token_id, shuffle=False)

    model.to(acc.device)  # before the optimizer: fused AdamW wants its params on the GPU
    trainable = [p for p in model.parameters() if p.requires_grad]
    n_train, n_all = sum(p.numel() for p in trainable), sum(p.numel() for p in model.parameters())
    warn = check_free_space(out, checkpoint_bytes(n_train, n_all, cfg.lora),
                            n_train * 4 if cfg.lora else n_all * 4, cfg.keep_checkpoints)
    groups = [{"params": [p for p in trainable if p.ndim >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in trainable if p.ndim < 2], "weight_decay": 0.0}]
    # Fused AdamW also exists on CPU: one kernel over all params, ~8x faster than the default
    # per-tensor loop there (20M params: 13 ms vs 103 ms a step; bench/train_throughput.py).
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr,
                                  fused=acc.device.type in ("cuda", "cpu") or None)
    warmup = _warmup(cfg, plan.total_steps)
    scheduler = make_scheduler(optimizer, warmup=warmup, total=plan.total_steps, kind=cfg.schedule)
    model, optimizer, scheduler = acc.prepare(model, optimizer, scheduler)
    # Names as accelerate saves them: from the model it keeps, the unwrapped one (DDP's wrapper
    # would prefix every name with "module." and match nothing in a checkpoint).
    names = {n for n, p in acc.unwrap_model(model).named_parameters() if p.requires_grad}
    if cfg.lora:
        acc.register_save_state_pre_hook(only_trainable(names))

    # extra: the data's identity (checked on resume) and the step count the schedule is planned for.
    state = TrainState(extra={"examples": len(data.train), "tokens": sum(plan.lengths),
                              PLANNED_STEPS: plan.total_steps})
    if ckpt is not None:
        saved = load_checkpoint(acc, ckpt, trainable=names if cfg.lora else None)
        identity = {k: v for k, v in state.extra.items() if k != PLANNED_STEPS}
        was_planned = saved.get("extra", {}).pop(PLANNED_STEPS, None)  # None: older checkpoint
        if saved.get("extra", {}) != identity:
            raise ConfigError(f"--resume: the training data changed since {ckpt} was written "
                              f"({saved.get('extra')} vs now {identity}). Resume with the "
                              "same data, or start a new --out.")
        state = TrainState(**{k: saved[k] for k in dataclasses.asdict(state)})
        state.extra[PLANNED_STEPS] = plan.total_steps
        if state.step >= plan.total_steps and (out / "final").is_dir():
            # Re-running would only save the same final/ again (and redo --eval-data's eval).
            say(f"Nothing to resume: {out} finished at step {state.step}/{plan.total_steps} and "
                f"its model is in {out / 'final'} (unchanged). To train longer, resume with a "
                "larger --max-steps or --epochs.")
            acc.end_training()
            return out / "final"
        say(f"Resuming from {ckpt} (step {state.step}/{plan.total_steps}).")
        if was_planned != plan.total_steps and state.step < plan.total_steps:
            say(_replan_schedule(cfg, scheduler, ckpt, state.step, was_planned, plan.total_steps))
    if main:
        create_output_dir(out, overwrite=cfg.overwrite, resume=cfg.resume)
        # Also on resume: config.yaml must hold the budget this run now has, so that
        # `--config DIR/config.yaml --resume` continues it rather than reading a stale one.
        write_config(out, cfg)
    acc.wait_for_everyone()

    say(_header(cfg, acc, data, plan, n_train, n_all, warmup))
    if warn:
        say(f"[yellow]warning:[/] {warn}")
    progress = TrainProgress(plan.total_steps, state.step, enabled=main, quiet=cfg.quiet)
    metrics = MetricsLog(out / "metrics.jsonl", state.step if ckpt else None, enabled=main)
    from .final import checkpoint_files  # checkpoints are model directories too

    files = checkpoint_files(acc, model, data.tokenizer, data.template, data.stop_ids, out,
                             lora=cfg.lora, base=cfg.model, resized=bool(new_ids))
    r = Run(cfg, out, acc, model, optimizer, scheduler, plan, eval_plan, state, metrics, progress,
            parse_duration(cfg.max_time) if cfg.max_time else None, files)
    try:
        reason = train_loop(r)
    finally:
        progress.close()
        metrics.close()

    from .final import save_final

    acc.unwrap_model(model).config.use_cache = True  # off for gradient checkpointing only
    final = save_final(acc, model, data.tokenizer, data.template, data.stop_ids, out,
                       lora=cfg.lora, base=cfg.model, resized=bool(new_ids))
    why = {"time": f"--max-time {cfg.max_time} reached", "done": "done"}[reason]
    say(f"Trained {state.step} steps ({why}); model saved to {final}"
        + (f"; skipped {state.skipped_steps} non-finite steps" if state.skipped_steps else ""))
    if reason == "time" and state.step < plan.total_steps:
        say(f"[yellow]warning:[/] stopped at step {state.step}/{plan.total_steps} by --max-time; "
            f"the learning-rate schedule was planned for {plan.total_steps} steps (warmup "
            f"{warmup}), so it ended {'still warming up' if state.step < warmup else 'undecayed'}"
            " — set --max-steps to fit the schedule to your budget")
    acc.end_training()
    return final


def _has_accelerator() -> bool:
    accel = getattr(torch, "accelerator", None)
    return accel.is_available() if accel is not None else torch.cuda.is_available()


def _warmup(cfg: TrainConfig, total_steps: int) -> int:
    return math.ceil(cfg.warmup_ratio * total_steps)


def _replan_schedule(cfg: TrainConfig, scheduler, ckpt: Path, step: int, was: int | None,
                     total: int) -> str:
    """A resume whose plan has another step count (--max-steps/--epochs changed) re-plans the lr
    schedule: make the next step use the new schedule's lr (the checkpoint restored the old
    plan's) and return a notice saying what changed, so nothing about it is silent."""
    inner = getattr(scheduler, "scheduler", scheduler)  # accelerate wraps the LambdaLR
    lrs = [base * fn(inner.last_epoch)
           for base, fn in zip(inner.base_lrs, inner.lr_lambdas, strict=True)]
    for group, lr in zip(inner.optimizer.param_groups, lrs, strict=True):
        group["lr"] = lr
    inner._last_lr = lrs  # what get_last_lr() (the logged lr) reports for the next step
    now = f"the learning rate at step {step + 1} is {lrs[0]:.3g}"
    if was is None:
        return (f"[yellow]note:[/] {ckpt} does not record how many steps its learning-rate "
                "schedule was planned for (written by an older instruct-tune), so whether "
                f"--max-steps/--epochs changed is unknown: the schedule is planned for {total} "
                f"steps now and {now}.")
    before = cfg.lr * lr_factor(step - 1, warmup=_warmup(cfg, was), total=was, kind=cfg.schedule)
    return (f"[yellow]note:[/] the schedule is re-planned for {total} steps (was {was}): {now} "
            f"(it was {before:.3g} at step {step}). --resume continues exactly only with the "
            "same --max-steps/--epochs.")


def _header(cfg, acc, data, plan: Plan, n_train: int, n_all: int, warmup: int) -> str:
    kind = f"LoRA r={cfg.lora_r} alpha={cfg.lora_alpha}" if cfg.lora else "full fine-tuning"
    batch = (f"{cfg.batch_size} x {cfg.grad_accum} accum x {acc.num_processes} proc = "
             f"{plan.rows_per_step} rows/step")
    if cfg.packing:  # the same rows, laid out in fewer sequences
        batch += (f", packed into ~{plan.sequences_per_step():.1f} sequences of <= "
                  f"{cfg.max_length} tokens")
    lines = [f"[bold]instruct-tune train[/]: {cfg.model} ({kind}, {cfg.precision}, "
             f"{acc.num_processes} process(es) on {acc.device.type})", *data.report,
             f"batches: {batch}; "
             f"{plan.total_steps} steps ({plan.epochs_done(plan.total_steps):.2f} epochs"
             f"{f'; --max-steps {cfg.max_steps} overrides --epochs' if cfg.max_steps else ''}); "
             f"padding {plan.padding_share():.1%}",
             f"params: {n_train:,} trainable of {n_all:,} ({n_train / max(n_all, 1):.2%}); lr "
             f"{cfg.lr:g} {cfg.schedule}, warmup {warmup} steps",
             f"out: {cfg.out} (checkpoint " + (f"every {cfg.save_every} steps and " if
                                               cfg.save_every else "") +
             f"at the end, keep {cfg.keep_checkpoints})"]
    if data.added_tokens:
        lines.append(f"added tokens {data.added_tokens} for template '{data.template.name}' "
                     "(embeddings resized; their rows are trained)")
    return "\n".join(lines)
