"""The header's batch line: with --packing a batch holds packed sequences, each several rows, so
it says how many rows a step trains on average instead of calling the sequences rows."""

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
    # One epoch of the 40-row file: whatever the packing, the steps train 40 rows in all.
    train(make_cfg(packing=True, batch_size=2, max_steps=None, epochs=1, save_every=0))
    line = _batch_line(said)
    assert line.startswith("batches: 2 packed sequences x 1 accum x 1 proc per step"), line
    m = re.search(r"\(~([\d.,]+) rows/step\); (\d+) steps", line)
    assert m, line
    rows, steps = float(m.group(1).replace(",", "")), int(m.group(2))
    assert steps >= 2 and rows == pytest.approx(40 / steps, abs=0.5)
    assert "= 2 rows/step" not in line


def test_unpacked_header_is_rows(make_cfg, said):
    train(make_cfg(batch_size=4, grad_accum=2, max_steps=1, save_every=0))
    assert _batch_line(said).startswith("batches: 4 x 2 accum x 1 proc = 8 rows/step;")
