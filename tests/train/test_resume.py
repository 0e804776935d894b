"""--resume continues exactly, keeps the last K checkpoints, and never reads a half-written one."""

from __future__ import annotations

import json
import shutil

import pytest

from instruct_tune.errors import ConfigError
from instruct_tune.train.checkpoint import STATE_FILE, latest_checkpoint, list_checkpoints
from instruct_tune.train.run import train
from tests.train.conftest import load_weights, max_abs_diff, metrics


def _cut_back(src, dst, step: int):
    """A copy of run `src` as it was right after checkpoint `step` (later state removed)."""
    shutil.copytree(src, dst)
    for s, path in list_checkpoints(dst):
        if s > step:
            shutil.rmtree(path)
    shutil.rmtree(dst / "final")


def test_resume_equals_uninterrupted(make_cfg, tmp_path):
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
