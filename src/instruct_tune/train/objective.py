"""What the loop optimizes: supervised tuning (SFT) or preference tuning (DPO and its family).

One loop serves both; an objective says how examples become batches and what a batch's loss is:

    length(ex)       tokens the example takes in a sequence (what packing and the plan count)
    capacity(n)      the longest sequence the plan may lay out for --max-length n
    units(ex)        what an optimizer step's loss is normalized by: trained tokens (SFT) or
                     pairs (preference); known up front, so accumulation and processes are exact
    collate(...)     the batch, laid out as the plan says
    loss(model, b)   (sum of the batch's per-unit losses, metric sums as a float64 vector)
    metrics(sums)    the logged values from metric sums added over micro-batches and processes
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from ..data.encode import trained_count
from ..data.pack import collate
from ..data.pair_batch import collate_pairs, pair_length
from .loss import answer_logps, loss_sum
from .preference import (
    METRIC_NAMES,
    NEEDS_REFERENCE,
    PairLogps,
    PreferenceLossConfig,
    metric_sums,
    metrics_from_sums,
    preference_losses,
)


class SFT:
    """Cross-entropy over response tokens, normalized per trained token."""

    name = "sft"
    units_name = "trained_tokens"  # what metrics.jsonl calls the units trained so far
    metric_names: tuple[str, ...] = ()

    def length(self, ex) -> int:
        return len(ex.input_ids)

    def units(self, ex) -> int:
        return trained_count(ex.labels)

    def capacity(self, max_length: int) -> int:
        """Longest sequence the plan may lay out."""
        return max_length

    def collate(self, examples: Sequence, pad_id: int, *, max_length: int, rows=None,
                indices: Sequence[int] | None = None):
        return collate(examples, pad_id, max_length=max_length, rows=rows)

    def loss(self, model, batch) -> tuple[torch.Tensor, torch.Tensor]:
        total, _ = loss_sum(model, batch)
        return total, torch.zeros(0, dtype=torch.float64, device=total.device)

    def metrics(self, sums: torch.Tensor, prefix: str = "") -> dict[str, float]:
        return {}


@dataclass
class Preference:
    """A preference loss over (prompt, chosen, rejected) pairs, normalized per pair. Pairs are laid
    out prefix-shared (data/pair_batch.py); `reference` holds each pair's (chosen, rejected)
    reference log-probs, computed once before training (train/reference.py)."""

    config: PreferenceLossConfig
    reference: Sequence[tuple[float, float]] | None = None
    metric_names: tuple[str, ...] = field(default=(*METRIC_NAMES, "pairs"))
    units_name = "trained_pairs"

    @property
    def name(self) -> str:
        return self.config.method

    @property
    def needs_reference(self) -> bool:
        return self.config.method in NEEDS_REFERENCE

    def length(self, pair) -> int:
        return pair_length(pair)

    def units(self, pair) -> int:
        return 1

    def capacity(self, max_length: int) -> int:
        """--max-length bounds prompt + one answer (as if each had its own sequence); a
        prefix-shared segment holds both answers, so up to twice that."""
        return 2 * max_length

    def collate(self, pairs: Sequence, pad_id: int, *, max_length: int, rows=None,
                indices: Sequence[int] | None = None):
        ref = None
        if self.needs_reference:
            ref = [self.reference[i] for i in indices] if indices is not None else self.reference
        return collate_pairs(pairs, pad_id, max_length=max_length, rows=rows, reference=ref)

    def loss(self, model, batch) -> tuple[torch.Tensor, torch.Tensor]:
        logps = answer_logps(model, batch)
        policy = pair_logps(logps, batch.answer_tokens.to(logps.device))
        reference = None
        if batch.reference is not None:
            reference = pair_logps(batch.reference.to(logps.device), policy_tokens(policy))
        losses, chosen, rejected = preference_losses(self.config, policy, reference)
        sums = metric_sums(losses, chosen, rejected, policy)
        return losses.sum(), torch.stack([sums[k] for k in self.metric_names])

    def metrics(self, sums: torch.Tensor, prefix: str = "") -> dict[str, float]:
        values = metrics_from_sums(dict(zip(self.metric_names, sums, strict=True)), prefix)
        values.pop(f"{prefix}loss", None)  # the loop logs the loss itself
        return values


def disable_dropout(model: torch.nn.Module) -> None:
    """Dropout off in the policy, as TRL's preference trainers do (disable_dropout=True): the
    reference log-probs are computed without dropout, so a policy with dropout on would not equal
    its reference at step 0 (loss != log 2) and its rewards would measure noise. Every nn.Dropout
    (LoRA's included) and attention dropout held as a float (Llama-style attention modules)."""
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
        if isinstance(getattr(m, "attention_dropout", None), float):
            m.attention_dropout = 0.0


def pair_logps(answers: torch.Tensor, tokens: torch.Tensor) -> PairLogps:
    """[2P] per-answer values (chosen, rejected interleaved) as PairLogps."""
    return PairLogps(answers[0::2], answers[1::2], tokens[0::2], tokens[1::2])


def policy_tokens(p: PairLogps) -> torch.Tensor:
    return torch.stack([p.chosen_tokens, p.rejected_tokens], 1).reshape(-1)
