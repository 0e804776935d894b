"""Which examples each optimizer step trains on, on each process, and how they are laid out.

Rows per optimizer step are always `batch_size * grad_accum * world`, with or without packing:
packing is a layout choice that changes speed, never the training. Epoch e is a list of
step-sized row groups, `pack.batches(seed, epoch=e)`: a pure function of the seed and the epoch, so
a resumed run recomputes it and skips exactly what was trained (the data position is just the
step). As in HF Trainer, a step never spans two epochs (an epoch's last step may be smaller), so no
row is ever dropped or seen twice within an epoch.

A step's rows are then laid out, once, here: without packing one row per sequence, in micro-
batches of `batch_size * world` sequences; with packing the step's rows are packed (best fit) into
as few sequences of at most --max-length tokens as they need, in micro-batches of at most
`batch_size * world` sequences, so a micro-batch never holds more tokens than an unpacked one
could. A micro-batch is a list of sequences, each a list of example indices; `collate` lays them
out exactly as planned. Process r trains sequences r, r + world, ... of each micro-batch.

Every process knows the whole plan, so the loss units of a step (the loss denominator: trained
tokens, or pairs for preference tuning; see objective.py) need no communication. A process left without a
sequence (tiny last batch) runs one with weight 0 so collective ops stay in step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..data.pack import Batch, batches, pack_balanced
from .objective import SFT

Rows = list[list[int]]  # a micro-batch: sequences of example indices


class Plan:
    def __init__(self, examples: Sequence, *, batch_size: int, grad_accum: int, world: int,
                 packing: bool, max_length: int, seed: int, epochs: float,
                 max_steps: int | None, pad_id: int, shuffle: bool = True, objective=None):
        self.objective = objective or SFT()
        self.examples, self.world, self.grad_accum = examples, world, grad_accum
        self.max_length = self.objective.capacity(max_length)  # longest sequence laid out
        self.packing, self.seed, self.pad_id = packing, seed, pad_id
        self.global_batch = batch_size * world  # sequences per micro-batch, all processes
        self.rows_per_step = self.global_batch * grad_accum
        self.shuffle = shuffle
        self._epochs: dict[int, list[list[Rows]]] = {}
        self.trained = [self.objective.units(e) for e in examples]  # the loss divides by it
        self.lengths = [self.objective.length(e) for e in examples]
        self.per_epoch = len(self.epoch(0))  # optimizer steps
        # HF Trainer/TRL semantics: --max-steps overrides --epochs, cycling epochs.
        self.total_steps = max_steps or max(1, math.ceil(epochs * self.per_epoch))

    def epoch(self, e: int) -> list[list[Rows]]:
        """Epoch e's optimizer steps, each a list of global micro-batches."""
        if e not in self._epochs:
            if len(self._epochs) > 2:  # a run only looks at the current epoch (and the next)
                self._epochs.pop(min(self._epochs))
            self._epochs[e] = self._build_epoch(e)
        return self._epochs[e]

    def micro_batches(self, e: int) -> list[Rows]:
        """Epoch e's global micro-batches in order, steps flattened."""
        return [micro for step in self.epoch(e) for micro in step]

    def _build_epoch(self, e: int) -> list[list[Rows]]:
        if not self.shuffle:  # eval: fixed order, length-grouped to waste little padding
            order = sorted(range(len(self.lengths)), key=lambda i: -self.lengths[i])
            return [self.layout(order[k:k + self.rows_per_step])
                    for k in range(0, len(order), self.rows_per_step)]
        steps = batches(self.lengths, self.rows_per_step, seed=self.seed, epoch=e)
        return [self.layout(rows) for rows in steps]

    def layout(self, indices: list[int]) -> list[Rows]:
        """A step's examples as micro-batches of at most `global_batch` sequences."""
        if self.packing:  # as few sequences as the rows need, evenly filled (less padding)
            bins = pack_balanced([self.lengths[i] for i in indices], self.max_length)
            seqs = [[indices[j] for j in b] for b in bins]
        else:
            seqs = [[i] for i in indices]
        return [seqs[k:k + self.global_batch] for k in range(0, len(seqs), self.global_batch)]

    def position(self, step: int) -> tuple[int, int]:
        """(epoch, step index within it) where optimizer step `step` (0-based) starts."""
        return divmod(min(step, self.total_steps), self.per_epoch)

    def epochs_done(self, steps: int) -> float:
        return min(steps, self.total_steps) / self.per_epoch

    def step_batches(self, step: int) -> list[Rows]:
        """The global micro-batches of optimizer step `step` (0-based)."""
        return self.epoch(step // self.per_epoch)[step % self.per_epoch]

    def tokens(self, micro: list[Rows]) -> tuple[int, int]:
        """(trained targets, real tokens) of these global micro-batches, over all processes."""
        ids = [i for rows in micro for seq in rows for i in seq]
        return sum(self.trained[i] for i in ids), sum(self.lengths[i] for i in ids)

    def local_batch(self, rows: Rows, rank: int) -> tuple[Batch, float]:
        """This process's share of a global micro-batch, collated as planned, and its loss
        weight (0 for a stand-in when the micro-batch has no sequence for this process)."""
        mine, weight = rows[rank::self.world], 1.0
        if not mine:
            mine, weight = rows[:1], 0.0
        flat = [i for seq in mine for i in seq]
        examples = [self.examples[i] for i in flat]
        at = {i: k for k, i in enumerate(flat)}
        layout = [[at[i] for i in seq] for seq in mine] if self.packing else None
        return self.objective.collate(examples, self.pad_id, max_length=self.max_length,
                                      rows=layout, indices=flat), weight

    def sequences_per_step(self) -> float:
        """Mean sequences an optimizer step trains on (with packing: packed sequences)."""
        steps = self.epoch(0)
        return sum(len(rows) for step in steps for rows in step) / max(len(steps), 1)

    def padding_share(self) -> float:
        """Share of the trained slots that are padding, for epoch 0 (shown in the header):
        `collate` pads every sequence of a micro-batch to its longest one."""
        real = slots = 0
        for rows in self.micro_batches(0):
            lengths = [sum(self.lengths[i] for i in seq) for seq in rows]
            real += sum(lengths)
            slots += len(lengths) * max(lengths)
        return 1.0 - real / slots if slots else 0.0
