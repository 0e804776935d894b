"""Learning-rate schedule: linear warmup, then cosine decay to 0 or constant.

Warmup starts at lr / (warmup + 1), not 0, so no optimizer step is wasted at lr = 0. The
schedule is a pure function of the step, so it resumes exactly (the scheduler's state is its
step count).
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR


def lr_factor(step: int, *, warmup: int, total: int, kind: str) -> float:
    """Multiplier of the peak lr for optimizer step `step` (0-based)."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if kind == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def make_scheduler(optimizer: torch.optim.Optimizer, *, warmup: int, total: int,
                   kind: str) -> LambdaLR:
    return LambdaLR(optimizer, lambda s: lr_factor(s, warmup=warmup, total=total, kind=kind))


def apply_lrs(scheduler) -> list[float]:
    """Set each param group's lr to the schedule's value at the scheduler's current step (after
    its plan changed) and return them; get_last_lr() (the logged lr) reports them too."""
    inner = getattr(scheduler, "scheduler", scheduler)  # accelerate wraps the LambdaLR
    lrs = [base * fn(inner.last_epoch)
           for base, fn in zip(inner.base_lrs, inner.lr_lambdas, strict=True)]
    for group, lr in zip(inner.optimizer.param_groups, lrs, strict=True):
        group["lr"] = lr
    inner._last_lr = lrs
    return lrs


def replan(scheduler, *, warmup: int, total: int, kind: str) -> list[float]:
    """Plan the schedule for `total` steps from now on (e.g. the steps --max-time leaves room
    for); returns the lr of the next step."""
    inner = getattr(scheduler, "scheduler", scheduler)
    inner.lr_lambdas = [lambda s: lr_factor(s, warmup=warmup, total=total, kind=kind)
                        for _ in inner.lr_lambdas]
    return apply_lrs(scheduler)
