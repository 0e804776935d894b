"""--max-steps overrides --epochs; --max-time warns when it cuts the schedule short; the final
generation eval uses --eval-max-new-tokens and stays short with --quiet."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from instruct_tune.train import run
from instruct_tune.train.plan import Plan
from instruct_tune.train.run import train
from tests.train.conftest import metrics


@pytest.fixture
def said(monkeypatch) -> list[str]:
    """Everything train() prints, unwrapped (rich crops long lines to the terminal width)."""
    lines: list[str] = []
    monkeypatch.setattr(run.console, "print", lambda *a, **k: lines.append(" ".join(map(str, a))))
    return lines


def _plan(n: int, max_steps: int | None, epochs: float = 3.0) -> Plan:
    examples = [SimpleNamespace(input_ids=[1] * (3 + i % 5), labels=[-100, 2] + [2] * (i % 5))
                for i in range(n)]
    return Plan(examples, batch_size=2, grad_accum=3, world=1, packing=False, max_length=16,
                seed=0, epochs=epochs, max_steps=max_steps, pad_id=0)


def test_max_steps_overrides_epochs_and_cycles_over_the_data():
    plan = _plan(10, max_steps=12, epochs=1)  # 5 micro-batches an epoch; 12 steps = 36 = 7.2 epochs
    assert plan.total_steps == 12
    seen = [i for s in range(plan.total_steps) for b in plan.step_batches(s) for i in b]
    assert len(seen) == 12 * 3 * 2
    assert all(seen.count(i) >= 7 for i in range(10))  # every row, every full epoch
    assert _plan(10, max_steps=1, epochs=100).total_steps == 1
    assert _plan(10, max_steps=None, epochs=1).total_steps == 2  # ceil(5 / 3)


def test_train_runs_max_steps_past_the_default_epochs(make_cfg, said):
    # 40 rows / 4 = 10 micro-batches an epoch: --epochs 1 alone would stop at 10 steps.
    final = train(make_cfg(max_steps=13, epochs=1, save_every=0))
    assert metrics(final.parent)[-1]["step"] == 13
    assert "--max-steps 13 overrides --epochs" in "\n".join(said)


def test_max_time_stop_warns_about_the_unfinished_schedule(make_cfg, said):
    final = train(make_cfg(max_steps=100_000, max_time="1s", save_every=0))
    step = metrics(final.parent)[-1]["step"]
    err = "\n".join(said)
    assert f"stopped at step {step}/100000 by --max-time" in err
    assert "set --max-steps to fit the schedule" in err


def test_final_eval_uses_eval_max_new_tokens_and_quiet_skips_the_table(make_cfg, eval_file,
                                                                       monkeypatch, said):
    from instruct_tune.evaluate import compare, report

    seen, tables = {}, []
    fake = {"n": 6, "stop_rate": 0.5, "rouge_l": 0.25, "base": {"stop_rate": 0.0, "rouge_l": 0.125}}
    monkeypatch.setattr(compare, "evaluate", lambda d, r, **kw: seen.update(kw) or fake)
    monkeypatch.setattr(report, "print_report", tables.append)
    from instruct_tune.evaluate.after_training import run as train_command

    train_command(make_cfg(max_steps=1, save_every=0, eval_data=str(eval_file),
                           eval_max_new_tokens=7))
    assert seen["max_new_tokens"] == 7
    assert tables == []  # --quiet (make_cfg's default): no big table
    err = "\n".join(said)
    assert "0.0% -> 50.0%" in err and "12.5% -> 25.0%" in err

    train_command(make_cfg(out=eval_file.parent / "loud", max_steps=1, save_every=0,
                           eval_data=str(eval_file), quiet=False))
    assert seen["max_new_tokens"] == 128 and tables == [fake]
