"""--max-steps overrides --epochs; --max-time warns when it cuts the schedule short; the final
generation eval uses --eval-max-new-tokens and stays short with --quiet."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from instruct_tune.train import run
from instruct_tune.train.plan import Plan
from instruct_tune.train.run import train
from tests.train.conftest import load_weights, max_abs_diff, metrics


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
    plan = _plan(10, max_steps=12, epochs=1)  # steps of 2 x 3 rows: an epoch is 6 + 4 rows
    assert plan.total_steps == 12 and plan.per_epoch == 2
    seen = [i for s in range(plan.total_steps) for b in plan.step_batches(s) for seq in b
            for i in seq]
    assert all(seen.count(i) == 6 for i in range(10))  # 12 steps = 6 epochs, every row each time
    assert _plan(10, max_steps=1, epochs=100).total_steps == 1
    assert _plan(10, max_steps=None, epochs=1).total_steps == 2


@pytest.mark.parametrize("packing", [False, True])
def test_the_batch_accumulation_split_does_not_change_the_run(make_cfg, tmp_path, packing):
    """--batch-size 4, 2 x --grad-accum 2 and 1 x --grad-accum 4 train the same rows in every
    step, with the same loss normalisation: the same losses and weights (up to float order)."""
    runs = [train(make_cfg(out=tmp_path / f"{b}x{a}", batch_size=b, grad_accum=a, max_steps=4,
                           packing=packing, max_length=128, save_every=0))
            for b, a in ((4, 1), (2, 2), (1, 4))]
    logs = [metrics(f.parent) for f in runs]
    assert [r["trained_tokens"] for r in logs[0]] == [r["trained_tokens"] for r in logs[1]] \
        == [r["trained_tokens"] for r in logs[2]]
    for other in logs[1:]:
        assert [r["loss"] for r in other] == pytest.approx([r["loss"] for r in logs[0]], rel=1e-5)
    weights = [load_weights(f) for f in runs]
    assert max(max_abs_diff(weights[0], w) for w in weights[1:]) < 1e-5


def test_train_runs_max_steps_past_the_default_epochs(make_cfg, said):
    # 40 rows / 4 = 10 micro-batches an epoch: --epochs 1 alone would stop at 10 steps.
    final = train(make_cfg(max_steps=13, epochs=1, save_every=0))
    assert metrics(final.parent)[-1]["step"] == 13
    assert "--max-steps 13 overrides --epochs" in "\n".join(said)


def test_max_time_stop_warns_about_the_unfinished_schedule(make_cfg, said):
    # No log point before the budget ends, so no pace to fit the schedule to: the run is cut.
    final = train(make_cfg(max_steps=100_000, max_time="1s", save_every=0, log_every=10**9))
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
    from instruct_tune.commands.train import run as train_command

    train_command(make_cfg(max_steps=1, save_every=0, eval_data=str(eval_file),
                           eval_max_new_tokens=7))
    assert seen["max_new_tokens"] == 7
    assert tables == []  # --quiet (make_cfg's default): no big table
    err = "\n".join(said)
    assert "0.0% -> 50.0%" in err and "12.5% -> 25.0%" in err

    train_command(make_cfg(out=eval_file.parent / "loud", max_steps=1, save_every=0,
                           eval_data=str(eval_file), quiet=False))
    assert seen["max_new_tokens"] == 128 and tables == [fake]
