"""Preference-tuning losses (DPO, IPO, hinge, robust DPO, SimPO, ORPO) as pure functions of log-probs.

Inputs are per-pair *summed* answer log-probs (stop token included) and answer token counts; outputs
are *per-pair* losses, so the loop can divide by the number of pairs in the whole optimizer step and
gradient accumulation stays exact. Formulas follow TRL (DPOTrainer loss types sigmoid/ipo/hinge/
robust, CPOTrainer loss_type="simpo", ORPOTrainer) and torchtune's DPOLoss, with two deliberate
differences: counts are clamped to >= 1 (TRL's SimPO/ORPO divide by zero on an empty answer), and
ORPO's average log-prob is capped just below 0 (TRL's odds are infinite at probability 1, which a
float32 log-softmax reaches on confident tokens).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..config import PREFERENCE_METHODS as METHODS
from ..config import PreferenceLossConfig

NEEDS_REFERENCE = {"dpo", "ipo", "hinge", "robust"}  # simpo/orpo are reference-free
__all__ = ["METHODS", "NEEDS_REFERENCE", "PairLogps", "PreferenceLossConfig", "metric_sums",
           "metrics_from_sums", "preference_losses", "preference_metrics"]

# ORPO's odds p/(1-p) are infinite at p = 1. Float32 log-softmax returns exactly 0 for tokens above
# ~1-6e-8, so cap the *average* log-prob at log(1 - 1e-6): odds at most 1e6, gradients finite.
_ORPO_MAX_AVG_LOGP = math.log1p(-1e-6)


@dataclass
class PairLogps:
    """Per pair, shape [P] each: summed answer log-probs (stop token included) and token counts."""

    chosen: Tensor
    rejected: Tensor
    chosen_tokens: Tensor
    rejected_tokens: Tensor


def _mean(logps: Tensor, tokens: Tensor) -> Tensor:
    """Per-token mean log-prob; an empty answer counts as one token so nothing divides by 0."""
    return logps / tokens.to(logps.dtype).clamp(min=1)


def _smoothed_sigmoid(x: Tensor, eps: float) -> Tensor:
    """cDPO: -log sigmoid(x) with the label flipped with probability eps (eps=0: plain DPO)."""
    loss = -F.logsigmoid(x) * (1 - eps)
    return loss - F.logsigmoid(-x) * eps if eps else loss


def _log1mexp(x: Tensor) -> Tensor:
    """log(1 - exp(x)) for x < 0, stable on both sides of -log 2 (as TRL's ORPO)."""
    return torch.where(x < -math.log(2), torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


def _check(policy: PairLogps, reference: PairLogps | None, method: str) -> None:
    shape = policy.chosen.shape
    pairs = [policy] + ([reference] if reference is not None else [])
    for p in pairs:
        for t in (p.chosen, p.rejected, p.chosen_tokens, p.rejected_tokens):
            if t.shape != shape or t.dim() != 1:
                raise ValueError(f"PairLogps tensors must all have shape [P]; got {tuple(t.shape)} "
                                 f"next to {tuple(shape)}")
    if method in NEEDS_REFERENCE and reference is None:
        raise ValueError(f"method {method!r} needs reference log-probs (reference=None given); "
                         "only simpo and orpo are reference-free")


def preference_losses(cfg: PreferenceLossConfig, policy: PairLogps,
                      reference: PairLogps | None) -> tuple[Tensor, Tensor, Tensor]:
    """(per-pair losses [P], chosen rewards [P], rejected rewards [P]); rewards are detached.

    Reference methods: rewards are beta * (policy - reference) summed log-probs, as TRL logs them.
    SimPO: beta * mean log-probs; ORPO: orpo_lambda * mean log-probs (TRL's ORPO beta). A given
    reference is ignored by simpo/orpo. Computed in at least float32 (bf16 logps lose the margin).
    """
    _check(policy, reference, cfg.method)
    dtype = torch.promote_types(policy.chosen.dtype, torch.float32)
    pc, pr = policy.chosen.to(dtype), policy.rejected.to(dtype)
    nc, nr = policy.chosen_tokens, policy.rejected_tokens
    beta, eps, method = cfg.beta, cfg.label_smoothing, cfg.method

    if method in NEEDS_REFERENCE:
        assert reference is not None
        chosen_ratio = pc - reference.chosen.to(dtype)
        rejected_ratio = pr - reference.rejected.to(dtype)
        logits = chosen_ratio - rejected_ratio  # (pc - rc) - (pr - rr)
        if method == "dpo":
            losses = _smoothed_sigmoid(beta * logits, eps)
        elif method == "ipo":
            # TRL: IPO's log-ratios are per-token means, so the squared loss does not grow with length.
            avg = _mean(chosen_ratio, nc) - _mean(rejected_ratio, nr)
            losses = (avg - 1 / (2 * beta)) ** 2
        elif method == "hinge":
            losses = torch.relu(1 - beta * logits)
        else:  # robust: unbiased under label noise eps (Chowdhury et al. 2024), as TRL
            clean = -(1 - eps) * F.logsigmoid(beta * logits)
            flipped = -eps * F.logsigmoid(-beta * logits)
            losses = (clean - flipped) / (1 - 2 * eps)
        chosen_rewards, rejected_rewards = beta * chosen_ratio, beta * rejected_ratio
    elif method == "simpo":
        ac, ar = _mean(pc, nc), _mean(pr, nr)
        # TRL: beta * (ac - ar - gamma/beta) = beta*(ac - ar) - gamma
        losses = _smoothed_sigmoid(beta * (ac - ar) - cfg.simpo_gamma, eps)
        chosen_rewards, rejected_rewards = beta * ac, beta * ar
    else:  # orpo
        ac = _mean(pc, nc).clamp(max=_ORPO_MAX_AVG_LOGP)
        ar = _mean(pr, nr).clamp(max=_ORPO_MAX_AVG_LOGP)
        log_odds = (ac - ar) - (_log1mexp(ac) - _log1mexp(ar))
        losses = -_mean(pc, nc) - cfg.orpo_lambda * F.logsigmoid(log_odds)
        chosen_rewards, rejected_rewards = cfg.orpo_lambda * ac, cfg.orpo_lambda * ar

    if cfg.sft_weight:
        losses = losses + cfg.sft_weight * -_mean(pc, nc)
    return losses, chosen_rewards.detach(), rejected_rewards.detach()


METRIC_NAMES = ("loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies",
                "rewards/margins", "logps/chosen", "logps/rejected")


def metric_sums(losses: Tensor, chosen_rewards: Tensor, rejected_rewards: Tensor,
                policy: PairLogps) -> dict[str, Tensor]:
    """Per-batch *sums* of the TRL metrics plus "pairs" (the count), all detached 0-dim float64.

    Add these across micro-batches (and all-reduce across processes), then `metrics_from_sums`:
    the result equals the metrics of the whole step, whatever the split.
    """
    c, r = chosen_rewards.detach().double(), rejected_rewards.detach().double()
    parts = (losses.detach().double(), c, r, (c > r).double(),  # ties are not wins, as in TRL
             c - r, policy.chosen.detach().double(), policy.rejected.detach().double())
    sums = {name: t.sum() for name, t in zip(METRIC_NAMES, parts, strict=True)}
    sums["pairs"] = torch.tensor(float(losses.numel()), dtype=torch.float64, device=losses.device)
    return sums


def metrics_from_sums(sums: dict[str, Tensor], prefix: str = "") -> dict[str, float]:
    """Batch means with TRL's names (prefix "eval_" for evaluation); {} when there were no pairs."""
    n = float(sums["pairs"])
    if n == 0:
        return {}
    return {f"{prefix}{name}": float(sums[name]) / n for name in METRIC_NAMES}


def preference_metrics(losses: Tensor, chosen_rewards: Tensor, rejected_rewards: Tensor,
                       policy: PairLogps, prefix: str = "") -> dict[str, float]:
    """TRL's logged metrics for one batch: loss, rewards/{chosen,rejected,accuracies,margins},
    logps/{chosen,rejected} (batch means of *summed* answer log-probs, for every method)."""
    return metrics_from_sums(metric_sums(losses, chosen_rewards, rejected_rewards, policy), prefix)
