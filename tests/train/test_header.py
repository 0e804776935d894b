"""The header's batch line: rows per step, whatever the layout; with --packing also how many
sequences those rows are packed into."""

from __future__ import annotations

import re

import pytest

from instruct_tune.train import run
from instruct_tune.train.run import train


@pytest.fixture
def said(monkeypatch) -> list[str]:
    lines: list[str] = []
    monkeypatch.setattr(run.console, "print", lambda *a, **k: lines.append(" ".join(map(str, a))))
    return lines


def _batch_line(said: list[str]) -> str:
    return next(x for line in said for x in line.splitlines() if x.startswith("batches:"))


def test_packed_header_counts_rows_per_step(make_cfg, said):
    # One epoch of the 40-row file at 2 rows per step, packed or not: 20 steps.
    train(make_cfg(packing=True, batch_size=2, max_steps=None, epochs=1, save_every=0))
    line = _batch_line(said)
    m = re.match(r"batches: 2 x 1 accum x 1 proc = 2 rows/step, packed into ~([\d.]+) "
                 r"sequences of <= \d+ tokens; (\d+) steps", line)
    assert m, line
    assert 1 <= float(m.group(1)) <= 2 and int(m.group(2)) == 20


def test_unpacked_header_is_rows(make_cfg, said):
    train(make_cfg(batch_size=4, grad_accum=2, max_steps=1, save_every=0))
    assert _batch_line(said).startswith("batches: 4 x 2 accum x 1 proc = 8 rows/step;")
