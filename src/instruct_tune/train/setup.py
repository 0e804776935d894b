"""Everything a run needs before its first step: the accelerator, data, model, objective (with the
reference pass for preference tuning), the plans, optimizer and schedule, prepared for the engine."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import TrainConfig
from ..errors import ConfigError
from .checkpoint import only_trainable
from .objective import SFT, Preference, disable_dropout
from .outdir import check_free_space, checkpoint_bytes
from .plan import Plan
from .prepare import Data, load_data, load_model_for_training
from .schedule import make_scheduler
from .sharding import check_fsdp


@dataclass
class Setup:
    cfg: TrainConfig
    accelerator: object
    data: Data
    model: torch.nn.Module  # prepared (DDP/FSDP-wrapped as the engine decides)
    new_ids: list[int]  # token ids added to the vocabulary (embeddings resized)
    objective: SFT | Preference
    plan: Plan
    eval_plan: Plan | None
    optimizer: torch.optim.Optimizer
    scheduler: object
    trainable: set[str]  # trainable weight names, as checkpoints hold them
    n_train: int  # trainable parameters
    n_all: int  # all parameters
    warmup: int  # warmup steps
    notes: list[str]  # header lines about the objective (which reference, ...)


def accelerator_for(cfg: TrainConfig):
    """The accelerate engine for this run (DDP/FSDP from the launcher and accelerate config)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState

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
    return acc


def build(cfg: TrainConfig, acc, say: Callable[[str], None]) -> Setup:
    data = load_data(cfg, say)
    model, new_ids = load_model_for_training(cfg, data.tokenizer)
    model.to(acc.device)  # before the optimizer: fused AdamW wants its params on the GPU
    objective, notes = _objective(cfg, acc, data, model, say)
    pad = data.tokenizer.pad_token_id
    plan = Plan(data.train, batch_size=cfg.batch_size, grad_accum=cfg.grad_accum,
                world=acc.num_processes, packing=cfg.packing, max_length=cfg.max_length,
                seed=cfg.seed, epochs=cfg.epochs, max_steps=cfg.max_steps, pad_id=pad,
                objective=objective)
    eval_plan = None if not data.eval else Plan(
        data.eval, batch_size=cfg.batch_size, grad_accum=1, world=acc.num_processes,
        packing=False, max_length=cfg.max_length, seed=cfg.seed, epochs=1, max_steps=None,
        pad_id=pad, shuffle=False, objective=_eval_objective(objective, cfg, acc, data, model))

    trainable = [p for p in model.parameters() if p.requires_grad]
    n_train, n_all = sum(p.numel() for p in trainable), sum(p.numel() for p in model.parameters())
    groups = [{"params": [p for p in trainable if p.ndim >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in trainable if p.ndim < 2], "weight_decay": 0.0}]
    # Fused AdamW also exists on CPU: one kernel over all params, ~8x faster than the default
    # per-tensor loop there (20M params: 13 ms vs 103 ms a step; bench/train_throughput.py).
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr,
                                  fused=acc.device.type in ("cuda", "cpu") or None)
    warmup = math.ceil(cfg.warmup_ratio * plan.total_steps)
    scheduler = make_scheduler(optimizer, warmup=warmup, total=plan.total_steps, kind=cfg.schedule)
    model, optimizer, scheduler = acc.prepare(model, optimizer, scheduler)
    # Names as accelerate saves them: from the model it keeps, the unwrapped one (DDP's wrapper
    # would prefix every name with "module." and match nothing in a checkpoint).
    names = {n for n, p in acc.unwrap_model(model).named_parameters() if p.requires_grad}
    if cfg.lora:
        acc.register_save_state_pre_hook(only_trainable(names))
    return Setup(cfg, acc, data, model, new_ids, objective, plan, eval_plan, optimizer, scheduler,
                 names, n_train, n_all, warmup, notes)


def _objective(cfg: TrainConfig, acc, data: Data, model, say) -> tuple[SFT | Preference, list[str]]:
    """SFT, or the preference loss with its reference log-probs (one pass, before training)."""
    if cfg.method == "sft":
        return SFT(), []
    objective = Preference(cfg.preference())
    disable_dropout(model)
    notes = [f"objective: {cfg.method} (beta {cfg.beta:g}"
             + (f", sft weight {cfg.sft_weight:g}" if cfg.sft_weight else "") + "; dropout off)"]
    if objective.needs_reference:
        from .reference import cache_file, describe, reference_logps

        objective.reference = reference_logps(
            model, data.train, acc, pad_id=data.tokenizer.pad_token_id,
            batch_size=cfg.batch_size, max_length=cfg.max_length, lora=cfg.lora,
            cache_file=cache_file(cfg.cache_dir, cfg.model, data.train, precision=cfg.precision,
                                  lora=cfg.lora), say=say)
        notes.append(describe(cfg.lora))
    else:
        notes.append(f"{cfg.method} is reference-free: no reference model or pass")
    return objective, notes


def _eval_objective(objective, cfg: TrainConfig, acc, data: Data, model):
    """The eval set's objective: the same loss, with the eval pairs' own reference log-probs."""
    if not isinstance(objective, Preference) or not objective.needs_reference:
        return objective
    from .reference import cache_file, reference_logps

    ref = reference_logps(model, data.eval, acc, pad_id=data.tokenizer.pad_token_id,
                          batch_size=cfg.batch_size, max_length=cfg.max_length, lora=cfg.lora,
                          cache_file=cache_file(cfg.cache_dir, cfg.model, data.eval,
                                                precision=cfg.precision, lora=cfg.lora),
                          say=lambda *_: None)
    return Preference(objective.config, ref)


def _has_accelerator() -> bool:
    accel = getattr(torch, "accelerator", None)
    return accel.is_available() if accel is not None else torch.cuda.is_available()


def free_space_warning(s: Setup, out: Path) -> str | None:
    """Raises when one checkpoint and the final model do not fit; a warning when K may not."""
    lora = s.cfg.lora
    return check_free_space(out, checkpoint_bytes(s.n_train, s.n_all, lora),
                            s.n_train * 4 if lora else s.n_all * 4, s.cfg.keep_checkpoints)
