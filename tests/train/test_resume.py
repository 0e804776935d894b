"""--resume continues exactly, keeps the last K checkpoints, and never reads a half-written one;
a resume with another budget says how the lr schedule changed and updates config.yaml."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import yaml

from instruct_tune.cli import parse
from instruct_tune.errors import ConfigError
from instruct_tune.train import run
from instruct_tune.train.checkpoint import STATE_FILE, latest_checkpoint, list_checkpoints
from instruct_tune.train.run import train
from tests.train.conftest import load_weights, max_abs_diff, metrics


@pytest.fixture
def said(monkeypatch) -> list[str]:
    """Everything train() prints, unwrapped (rich wraps long lines at the terminal width)."""
    lines: list[str] = []
    monkeypatch.setattr(run.console, "print", lambda *a, **k: lines.append(" ".join(map(str, a))))
    return lines


def _cut_back(src, dst, step: int):
    """A copy of run `src` as it was right after checkpoint `step` (later state removed)."""
    shutil.copytree(src, dst)
    for s, path in list_checkpoints(dst):
        if s > step:
            shutil.rmtree(path)
    shutil.rmtree(dst / "final")


def test_resume_equals_uninterrupted(make_cfg, tmp_path, said):
    """Stopped after step 3 and resumed == never stopped (gpt2 has dropout, so the RNG state
    matters; grad accumulation 2 makes the data position matter)."""
    full = train(make_cfg("gpt2", out=tmp_path / "full", max_steps=8, save_every=3,
                          keep_checkpoints=10, grad_accum=2, epochs=2))
    _cut_back(full.parent, tmp_path / "resumed", 3)
    # A run killed after its last checkpoint logged steps the resumed run will redo.
    with (tmp_path / "resumed" / "metrics.jsonl").open("a") as f:
        f.write('{"step": 99, "loss": 1.0}\n{"step": 100, "lo')
    resumed = train(make_cfg("gpt2", out=tmp_path / "resumed", max_steps=8, save_every=3,
                             keep_checkpoints=10, grad_accum=2, epochs=2, resume=True))
    diff = max_abs_diff(load_weights(full), load_weights(resumed))
    assert diff <= 1e-6, diff
    a, b = metrics(full.parent), metrics(resumed.parent)
    assert [r["step"] for r in b] == list(range(1, 9))
    assert [r["loss"] for r in a] == pytest.approx([r["loss"] for r in b], abs=1e-6)
    assert b[-1]["trained_tokens"] == a[-1]["trained_tokens"]
    assert not [line for line in said if "schedule" in line]  # same plan: nothing to say


def test_resuming_a_finished_run_changes_nothing(make_cfg, tmp_path, capsys):
    final = train(make_cfg(out=tmp_path / "done", max_steps=3))
    before = {p: p.stat().st_mtime_ns for p in final.parent.rglob("*") if p.is_file()}
    capsys.readouterr()
    again = train(make_cfg(out=tmp_path / "done", max_steps=3, resume=True))
    assert again == final and "Nothing to resume" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in final.parent.rglob("*") if p.is_file()} == before
    longer = train(make_cfg(out=tmp_path / "done", max_steps=5, resume=True))
    assert [r["step"] for r in metrics(longer.parent)] == [1, 2, 3, 4, 5]


def test_keep_last_k_and_state(make_cfg, tmp_path):
    final = train(make_cfg(out=tmp_path / "k", max_steps=5, save_every=1, keep_checkpoints=2))
    assert [s for s, _ in list_checkpoints(final.parent)] == [4, 5]
    state = json.loads((latest_checkpoint(final.parent) / STATE_FILE).read_text())
    assert state["step"] == 5 and state["world_size"] == 1
    assert (state["epoch"], state["batch_index"]) == (0, 5)  # 40 rows / 4 = 10 batches per epoch
    assert not list((final.parent / "checkpoints").glob(".tmp-*"))


def test_half_written_checkpoints_are_ignored(make_cfg, tmp_path):
    final = train(make_cfg(out=tmp_path / "h", max_steps=4, save_every=2))
    root = final.parent / "checkpoints"
    shutil.copytree(root / "step-4", root / ".tmp-step-6")  # killed before the rename
    (root / "step-8").mkdir()  # a directory without trainer_state.json is not a checkpoint
    assert latest_checkpoint(final.parent) == root / "step-4"


def test_resume_refuses_changed_settings_or_nothing_to_resume(make_cfg, tmp_path):
    out = tmp_path / "r"
    train(make_cfg(out=out, max_steps=2, save_every=2))
    with pytest.raises(ConfigError, match="batch-size"):
        train(make_cfg(out=out, max_steps=4, batch_size=2, resume=True))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="no complete checkpoint"):
        train(make_cfg(out=empty, resume=True))


@pytest.mark.parametrize("content", ['{"step": 4, "ep', '[]', ''])
def test_damaged_trainer_state_is_a_clear_error(make_cfg, tmp_path, content):
    final = train(make_cfg(out=tmp_path / "d", max_steps=4, save_every=2))
    (latest_checkpoint(final.parent) / STATE_FILE).write_text(content)
    with pytest.raises(ConfigError, match="damaged.*Delete"):
        train(make_cfg(out=tmp_path / "d", max_steps=6, save_every=2, resume=True))


def test_longer_budget_replans_the_schedule_and_says_so(make_cfg, tmp_path, said):
    """--max-steps 4, then --resume --max-steps 8: a notice gives the lr before and after the
    re-plan, the resumed steps follow the 8-step schedule, and config.yaml says 8 so that
    `--config DIR/config.yaml --resume` finds the run finished instead of reading 4."""
    out, opts = tmp_path / "r", dict(warmup_ratio=0.25, save_every=0)  # warmup 1 step, then 2
    train(make_cfg(out=out, max_steps=4, **opts))
    lr_at_4 = metrics(out)[3]["lr"]
    said.clear()
    train(make_cfg(out=out, max_steps=8, resume=True, **opts))
    notice = [line for line in said if "re-planned" in line]
    assert len(notice) == 1, said
    m = re.search(r"re-planned for 8 steps \(was 4\): the learning rate at step 5 is (\S+) "
                  r"\(it was (\S+) at step 4\)", notice[0])
    assert m, notice[0]
    fresh = train(make_cfg(out=tmp_path / "fresh", max_steps=8, **opts))
    want = [r["lr"] for r in metrics(fresh.parent)][4:]
    assert [r["lr"] for r in metrics(out)][4:] == pytest.approx(want, rel=1e-12)
    assert float(m.group(1)) == pytest.approx(want[0], rel=1e-2)  # printed with 3 digits
    assert float(m.group(2)) == pytest.approx(lr_at_4, rel=1e-2) and want[0] > 2 * lr_at_4
    state = json.loads((latest_checkpoint(out) / STATE_FILE).read_text())
    assert state["extra"]["planned_steps"] == 8

    saved = out / "config.yaml"
    assert yaml.safe_load(saved.read_text())["max_steps"] == 8
    said.clear()
    assert train(parse("train", ["--config", str(saved), "--resume"])) == out / "final"
    assert any("Nothing to resume" in line and "step 8/8" in line for line in said), said


def test_old_checkpoint_without_planned_steps_says_it_is_unknown(make_cfg, tmp_path, said):
    out = tmp_path / "old"
    train(make_cfg(out=out, max_steps=3, save_every=0))
    path = latest_checkpoint(out) / STATE_FILE
    state = json.loads(path.read_text())
    del state["extra"]["planned_steps"]  # as written before the key existed
    path.write_text(json.dumps(state))
    said.clear()
    train(make_cfg(out=out, max_steps=5, resume=True, save_every=0))
    assert any("does not record how many steps" in line and "planned for 5 steps" in line
               for line in said), said
    assert [r["step"] for r in metrics(out)] == [1, 2, 3, 4, 5]


def test_config_yaml_of_an_overwrite_run_resumes(make_cfg, tmp_path):
    """A run started with --overwrite: its config.yaml must not carry `overwrite: true` (the
    documented `--config DIR/config.yaml --resume` would be a conflict, and a plain re-run with
    --config would delete the run)."""
    first = train(make_cfg(out=tmp_path / "o", max_steps=2, save_every=0, overwrite=True))
    saved = first.parent / "config.yaml"
    assert not yaml.safe_load(saved.read_text())["overwrite"]
    train(parse("train", ["--config", str(saved), "--max-steps", "3", "--resume"]))
    assert [r["step"] for r in metrics(first.parent)] == [1, 2, 3]
