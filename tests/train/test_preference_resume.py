"""A preference run killed with SIGKILL (after a step, in the middle of a checkpoint write) and
resumed ends with the weights of a run that was never interrupted: the reference log-probs of
the resumed sessions, read from the cache or computed again from --model, are the first
session's. The kills are real SIGKILLs of a forked `instruct-tune train` (as test_crash.py)."""

from __future__ import annotations

import multiprocessing
import signal
import sys

import numpy as np

from instruct_tune import cli
from instruct_tune.train import checkpoint
from instruct_tune.train.checkpoint import latest_checkpoint
from instruct_tune.train.run import train
from tests.train.conftest import load_weights, max_abs_diff, metrics
from tests.train.test_preference_train import pairs_file  # noqa: F401  (fixture)

SETTINGS = dict(method="dpo", max_steps=6, save_every=2, keep_checkpoints=2, batch_size=3)


def _flags(cfg, cache_dir: str) -> list[str]:
    return ["--model", cfg.model, "--data", cfg.data, "--out", cfg.out, "--cache-dir", cache_dir,
            "--quiet", "--method", cfg.method, "--batch-size", str(cfg.batch_size),
            "--max-steps", str(cfg.max_steps), "--save-every", str(cfg.save_every),
            "--keep-checkpoints", str(cfg.keep_checkpoints), "--lr", str(cfg.lr),
            "--seed", str(cfg.seed), "--warmup-ratio", "0", "--log-every", "1"]


def _child(argv: list[str], point: str) -> None:
    checkpoint._TEST_SIGNAL = f"KILL@{point}"
    sys.exit(cli.main(argv))


def _killed_run(cfg, point: str, *, resume: bool, cache_dir: str) -> int:
    argv = ["train", *_flags(cfg, cache_dir), *(["--resume"] if resume else [])]
    child = multiprocessing.get_context("fork").Process(target=_child, args=(argv, point))
    child.start()
    child.join(timeout=180)
    return child.exitcode


def test_sigkill_then_resume_equals_an_uninterrupted_run(make_cfg, pairs_file, tmp_path):  # noqa: F811
    def cfg(out, **kw):
        return make_cfg("gpt2", out=tmp_path / out, data=str(pairs_file), **SETTINGS, **kw)

    reference = train(cfg("reference"))  # no cache: reference log-probs computed in-process
    out, cache = tmp_path / "crashy", tmp_path / "cache"
    crashy = cfg("crashy")

    # session 1 computes the reference log-probs and caches them; killed after step 3
    assert _killed_run(crashy, "step:3", resume=False, cache_dir=str(cache)) == -signal.SIGKILL
    assert latest_checkpoint(out).name == "step-2"
    (cached,) = cache.rglob("reference/*.npy")
    written = (cached.stat().st_mtime_ns, cached.read_bytes())

    # session 2 computes them again (no cache); killed while checkpoint 4 is half written
    code = _killed_run(crashy, "checkpoint:4", resume=True, cache_dir="none")
    assert code == -signal.SIGKILL
    assert latest_checkpoint(out).name == "step-2" and (out / "checkpoints" / ".tmp-step-4").is_dir()

    # session 3 reads them from the cache (the file is not written again) and finishes
    final = train(cfg("crashy", resume=True, cache_dir=str(cache)))
    assert (cached.stat().st_mtime_ns, cached.read_bytes()) == written
    diff = max_abs_diff(load_weights(reference), load_weights(final))
    assert diff <= 1e-6, diff
    # the logged losses (computed against the reference log-probs) agree step by step
    want = {r["step"]: r["loss"] for r in metrics(reference.parent)}
    got = {r["step"]: r["loss"] for r in metrics(out)}  # the redone steps logged last
    assert got.keys() == want.keys()
    assert np.abs(np.array([got[k] - want[k] for k in want])).max() <= 1e-6
