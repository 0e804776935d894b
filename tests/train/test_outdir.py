"""Output safety: no run is overwritten by accident, problems with --out or the flags are reported
before any slow work, and nothing is deleted when a run fails to start."""

from __future__ import annotations

import shutil
from collections import namedtuple

import pytest

from instruct_tune.errors import ConfigError, DataError
from instruct_tune.train import outdir
from instruct_tune.train.outdir import MetricsLog, check_output_dir, release_output_dir
from instruct_tune.train.run import parse_duration, resolve, train
from tests.train.conftest import metrics


def test_existing_run_is_never_overwritten_without_a_flag(make_cfg, tmp_path):
    out = tmp_path / "run"
    train(make_cfg(out=out, max_steps=2, save_every=0))
    before = (out / "metrics.jsonl").read_text()
    with pytest.raises(ConfigError, match="not empty.*--resume.*--overwrite"):
        train(make_cfg(out=out, max_steps=2))
    assert (out / "metrics.jsonl").read_text() == before

    # A start that fails (bad data) deletes nothing, even with --overwrite.
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "x"}\n')
    with pytest.raises(DataError, match=r"\[output\]: column missing"):
        train(make_cfg(out=out, data=str(bad), overwrite=True))
    assert (out / "metrics.jsonl").read_text() == before

    train(make_cfg(out=out, max_steps=3, save_every=0, overwrite=True))
    assert [r["step"] for r in metrics(out)] == [1, 2, 3]


def test_overwrite_refuses_directories_that_are_not_runs(tmp_path):
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.tex").write_text("...")
    with pytest.raises(ConfigError, match="1 entry this tool did not write: chapter1.tex"):
        check_output_dir(precious, overwrite=True, resume=False)
    check_output_dir(tmp_path / "new" / "dir", overwrite=False, resume=False)  # fine: created later


def test_unwritable_or_file_out(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        check_output_dir(blocker, overwrite=False, resume=False)
    with pytest.raises(ConfigError, match="Cannot write"):
        check_output_dir(blocker / "sub" / "run", overwrite=False, resume=False)


def test_too_little_disk_is_reported_before_training(make_cfg, tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(outdir.shutil, "disk_usage", lambda p: usage(10**6, 10**6 - 1000, 1000))
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match="Not enough free disk space"):
        train(make_cfg(out=out))
    release_output_dir(out)  # what ends train()'s claim (at the latest, the process's exit)
    assert not out.exists()  # reported before anything was written
    monkeypatch.setattr(outdir.shutil, "disk_usage", shutil.disk_usage)
    assert outdir.check_free_space(tmp_path, 10, 10, keep=3) is None


@pytest.mark.parametrize("flags, message", [
    (dict(resume=True, overwrite=True), "--resume continues a run, --overwrite deletes it"),
    (dict(eval_data="e.jsonl", eval_split=0.1), "--eval-data and --eval-split"),
    (dict(batch_size=0), "--batch-size"),
    (dict(eval_split=1.5), "--eval-split"),
    (dict(max_time="ten minutes"), "duration like"),
    (dict(out=""), "--out"),
])
def test_conflicting_or_invalid_flags(make_cfg, flags, message):
    with pytest.raises(ConfigError, match=message.replace("-", r"\-")):
        resolve(make_cfg(**flags))


def test_default_learning_rates(make_cfg):
    assert resolve(make_cfg(lr=None)).lr == 2e-5
    assert resolve(make_cfg(lr=None, lora=True)).lr == 2e-4


@pytest.mark.parametrize("text, seconds", [("300s", 300), ("20m", 1200), ("2h", 7200),
                                           ("1h30m", 5400), ("45", 45), ("1.5h", 5400)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


def test_metrics_log_drops_steps_after_the_resumed_one(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"step": 3}\n{"step": 4, "lo')  # torn last line
    log = MetricsLog(path, resume_step=2)
    log.write({"step": 3, "loss": 1.0})
    log.close()
    assert [r["step"] for r in metrics(tmp_path)] == [1, 2, 3]
