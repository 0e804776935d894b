"""Nothing is lost to a crash: SIGKILL after a step, in the middle of a checkpoint write and in the
middle of writing final/, each followed by --resume, ends with the same weights as a run that was
never interrupted. Ctrl-C saves a checkpoint and says how to resume.

The kills are real SIGKILLs of a child process running `instruct-tune train`, delivered at exact
points by the INSTRUCT_TUNE_TEST_SIGNAL hook (see train/checkpoint.py)."""

from __future__ import annotations

import multiprocessing
import signal
import sys

from instruct_tune import cli
from instruct_tune.train import checkpoint
from instruct_tune.train.checkpoint import latest_checkpoint
from instruct_tune.train.run import train
from tests.train.conftest import load_weights, max_abs_diff

SETTINGS = dict(max_steps=9, save_every=3, keep_checkpoints=2)


def _flags(cfg) -> list[str]:
    return ["--model", cfg.model, "--data", cfg.data, "--out", cfg.out, "--cache-dir", "none",
            "--quiet", "--batch-size", str(cfg.batch_size), "--max-steps", str(cfg.max_steps),
            "--save-every", str(cfg.save_every), "--keep-checkpoints", str(cfg.keep_checkpoints),
            "--lr", str(cfg.lr), "--seed", str(cfg.seed), "--warmup-ratio", "0", "--log-every", "1"]


def _child(argv: list[str], point: str) -> None:
    checkpoint._TEST_SIGNAL = f"KILL@{point}"
    sys.exit(cli.main(argv))


def _killed_run(cfg, point: str, resume: bool) -> int:
    """Run `instruct-tune train` in a forked child (no second import of torch: fast) that gets
    SIGKILL at `point`; return its exit code."""
    argv = ["train", *_flags(cfg), *(["--resume"] if resume else [])]
    child = multiprocessing.get_context("fork").Process(target=_child, args=(argv, point))
    child.start()
    child.join(timeout=180)
    return child.exitcode


def test_sigkill_at_three_points_then_resume(make_cfg, tmp_path):
    reference = train(make_cfg("gpt2", out=tmp_path / "reference", **SETTINGS))
    cfg = make_cfg("gpt2", out=tmp_path / "crashy", **SETTINGS)
    out = tmp_path / "crashy"

    code = _killed_run(cfg, "step:5", resume=False)  # mid-training, after checkpoint 3
    assert code == -signal.SIGKILL
    assert latest_checkpoint(out).name == "step-3"

    code = _killed_run(cfg, "checkpoint:6", resume=True)  # checkpoint 6 is half written
    assert code == -signal.SIGKILL
    assert (out / "checkpoints" / ".tmp-step-6").is_dir()
    assert latest_checkpoint(out).name == "step-3"  # the half-written one is never picked up

    code = _killed_run(cfg, "final", resume=True)  # all steps done, final/ half written
    assert code == -signal.SIGKILL
    assert latest_checkpoint(out).name == "step-9" and not (out / "final").exists()

    final = train(make_cfg("gpt2", out=out, resume=True, **SETTINGS))
    diff = max_abs_diff(load_weights(reference), load_weights(final))
    assert diff <= 1e-6, diff
    assert not list((out / "checkpoints").glob(".tmp-*"))
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-6", "step-9"]


def test_ctrl_c_saves_and_says_how_to_resume(make_cfg, tmp_path, monkeypatch, capsys):
    """SIGINT during step 4: the step completes, is checkpointed, exit code 130 with the resume
    command; resuming finishes with the uninterrupted weights."""
    reference = train(make_cfg(out=tmp_path / "reference", **SETTINGS))
    cfg = make_cfg(out=tmp_path / "interrupted", **SETTINGS)
    monkeypatch.setattr(checkpoint, "_TEST_SIGNAL", "INT@step:4")
    code = cli.main(["train", *_flags(cfg)])
    assert code == 130
    err = capsys.readouterr().err
    assert "Interrupted at step 4" in err and "--resume" in err and "step-4" in err
    assert latest_checkpoint(tmp_path / "interrupted").name == "step-4"
    assert not (tmp_path / "interrupted" / "final").exists()

    monkeypatch.setattr(checkpoint, "_TEST_SIGNAL", "")
    final = train(make_cfg(out=tmp_path / "interrupted", resume=True, **SETTINGS))
    assert max_abs_diff(load_weights(reference), load_weights(final)) <= 1e-6
