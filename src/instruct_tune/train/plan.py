"""Which examples each optimizer step trains on, on each process: the run's data schedule.

Epoch e is a list of optimizer steps, `pack.batches(seed, epoch=e)` with step-sized batches
(`batch_size * grad_accum * world` rows, or packed rows): a pure function of the seed and the
epoch, so a resumed run recomputes it and skips exactly what was trained (the data position is
just the step). Each step's rows are then split into `grad_accum` micro-batches. So a step trains
the same rows however it is split: `--batch-size 8` and `--batch-size 2 --grad-accum 4` take the
same optimizer steps. As in HF Trainer, a step never spans two epochs (an epoch's last step may
be smaller), so no row is ever dropped or seen twice within an epoch.

Every micro-batch is a *global* batch of `batch_size * world` rows; process r trains rows
r, r + world, ... of it. Every process knows the whole plan, so the trained-token count of a step
(the loss denominator, summed over micro-batches and processes) needs no communication. A process
left without rows (tiny last batch) runs one row with weight 0 so collective ops stay in step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..data.pack import IGNORE, Batch, batches, collate, pack


def trained_count(labels: Sequence[int]) -> int:
    """Targets of one example as `collate` counts them: its first token is never a target."""
    return sum(1 for x in labels[1:] if x != IGNORE)


class Plan:
    def __init__(self, examples: Sequence, *, batch_size: int, grad_accum: int, world: int,
                 packing: bool, max_length: int, seed: int, epochs: float,
                 max_steps: int | None, pad_id: int, shuffle: bool = True):
        self.examples, self.world, self.grad_accum = examples, world, grad_accum
        self.packing, self.max_length, self.seed, self.pad_id = packing, max_length, seed, pad_id
        self.global_batch = batch_size * world
        self.shuffle = shuffle
        self._epochs: dict[int, list[list[list[int]]]] = {}
        self.trained = [trained_count(e.labels) for e in examples]
        self.lengths = [len(e.input_ids) for e in examples]
        self.per_epoch = len(self.epoch(0))  # optimizer steps
        # HF Trainer/TRL semantics: --max-steps overrides --epochs, cycling epochs.
        self.total_steps = max_steps or max(1, math.ceil(epochs * self.per_epoch))

    def epoch(self, e: int) -> list[list[list[int]]]:
        """Epoch e's optimizer steps, each a list of global micro-batches (example indices)."""
        if e not in self._epochs:
            if len(self._epochs) > 2:  # a run only looks at the current epoch (and the next)
                self._epochs.pop(min(self._epochs))
            self._epochs[e] = self._build_epoch(e)
        return self._epochs[e]

    def micro_batches(self, e: int) -> list[list[int]]:
        """Epoch e's global micro-batches in order, steps flattened."""
        return [micro for step in self.epoch(e) for micro in step]

    def _build_epoch(self, e: int) -> list[list[list[int]]]:
        if not self.shuffle:  # eval: fixed order, length-grouped to waste little padding
            order = sorted(range(len(self.lengths)), key=lambda i: -self.lengths[i])
            return [[order[k:k + self.global_batch]]
                    for k in range(0, len(order), self.global_batch)]
        steps = batches(self.lengths, self.global_batch * self.grad_accum, packing=self.packing,
                        max_length=self.max_length, seed=self.seed, epoch=e)
        return [self._micro_batches(rows) for rows in steps]

    def _micro_batches(self, indices: list[int]) -> list[list[int]]:
        """A step's examples as micro-batches of `global_batch` rows (packed: bins)."""
        if self.packing:
            bins = pack([self.lengths[i] for i in indices], self.max_length)
            units = [[indices[j] for j in b] for b in bins]
        else:
            units = [[i] for i in indices]
        return [[i for u in units[k:k + self.global_batch] for i in u]
                for k in range(0, len(units), self.global_batch)]

    def position(self, step: int) -> tuple[int, int]:
        """(epoch, step index within it) where optimizer step `step` (0-based) starts."""
        return divmod(min(step, self.total_steps), self.per_epoch)

    def epochs_done(self, steps: int) -> float:
        return min(steps, self.total_steps) / self.per_epoch

    def step_batches(self, step: int) -> list[list[int]]:
        """The global micro-batches (example indices) of optimizer step `step` (0-based)."""
        return self.epoch(step // self.per_epoch)[step % self.per_epoch]

    def tokens(self, micro: list[list[int]]) -> tuple[int, int]:
        """(trained targets, real tokens) of these global micro-batches, over all processes."""
        return (sum(self.trained[i] for b in micro for i in b),
                sum(self.lengths[i] for b in micro for i in b))

    def local_batch(self, indices: list[int], rank: int) -> tuple[Batch, float]:
        """This process's share of a global micro-batch, collated, and its loss weight."""
        if self.packing:  # split whole packed rows (the same best-fit bins `batches` made)
            rows = pack([self.lengths[i] for i in indices], self.max_length)
            mine = [indices[j] for row in rows[rank::self.world] for j in row]
        else:
            mine = indices[rank::self.world]
        weight = 1.0
        if not mine:
            mine, weight = indices[:1], 0.0
        rows = [self.examples[i] for i in mine]
        return collate(rows, self.pad_id, packed=self.packing, max_length=self.max_length), weight

    def rows_per_step(self) -> float:
        """Mean examples an optimizer step trains on (with packing: over all its packed rows)."""
        return len(self.examples) / self.per_epoch

    def padding_share(self) -> float:
        """Share of the trained slots that are padding, for epoch 0 (shown in the header)."""
        real = slots = 0
        for b in self.micro_batches(0):
            lengths = [self.lengths[i] for i in b]
            real += sum(lengths)
            if self.packing:  # collate pads each packed row to the batch's longest row
                rows = pack(lengths, self.max_length)
                slots += len(rows) * max(sum(lengths[j] for j in row) for row in rows)
            else:
                slots += len(lengths) * max(lengths)
        return 1.0 - real / slots if slots else 0.0
