"""Packing is a layout choice: it changes speed, never the training. --batch-size x --grad-accum
x processes counts rows per optimizer step whether or not the rows are packed."""

from __future__ import annotations

import pytest

from instruct_tune.train.plan import Plan
from instruct_tune.train.run import train
from tests.train.conftest import load_weights, max_abs_diff, metrics


@pytest.mark.parametrize("batch_size, grad_accum", [(4, 1), (2, 2)])
def test_packed_and_unpacked_runs_train_the_same_weights(make_cfg, tmp_path, batch_size, grad_accum):
    """20 optimizer steps over rows of a few to a few hundred tokens (two epochs of the 40-row
    file at 4 rows/step): the same weights and losses, with and without --packing."""
    common = dict(batch_size=batch_size, grad_accum=grad_accum, max_steps=20, save_every=0,
                  max_length=512, lr=1e-3)
    unpacked = train(make_cfg(out=tmp_path / "unpacked", **common))
    packed = train(make_cfg(out=tmp_path / "packed", packing=True, **common))
    assert max_abs_diff(load_weights(unpacked), load_weights(packed)) <= 1e-5
    a, b = metrics(unpacked.parent), metrics(packed.parent)
    assert [m["trained_tokens"] for m in a] == [m["trained_tokens"] for m in b]
    assert [m["loss"] for m in a] == pytest.approx([m["loss"] for m in b], abs=1e-5)


class _Ex:
    def __init__(self, n: int):
        self.input_ids, self.labels = [1] * n, [-100] + [1] * (n - 1)

    @property
    def num_trained(self) -> int:
        return len(self.labels) - 1


def test_packed_steps_hold_the_same_rows_in_fewer_sequences():
    examples = [_Ex(n) for n in [5, 9, 30, 3, 12, 7, 21, 2, 8, 4, 16, 6]]
    kw = dict(batch_size=3, grad_accum=2, world=1, max_length=32, seed=0, epochs=1,
              max_steps=None, pad_id=0)
    unpacked, packed = Plan(examples, packing=False, **kw), Plan(examples, packing=True, **kw)
    assert unpacked.total_steps == packed.total_steps == 2  # 12 rows / 6 rows per step
    for step in range(2):
        rows = [sorted(i for mb in plan.step_batches(step) for seq in mb for i in seq)
                for plan in (unpacked, packed)]
        assert rows[0] == rows[1] and len(rows[0]) == 6
        seqs = [seq for mb in packed.step_batches(step) for seq in mb]
        assert all(sum(examples[i].input_ids.__len__() for i in s) <= 32 for s in seqs)
        assert len(seqs) < 6  # fewer sequences than rows
        assert all(len(mb) <= 3 for mb in packed.step_batches(step))  # memory stays flat
