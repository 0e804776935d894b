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
