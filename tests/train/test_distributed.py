"""The same command under torchrun (2 CPU processes, gloo): with the same global batch the loss
curve matches a single-process run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from instruct_tune.train.checkpoint import STATE_FILE, latest_checkpoint
from instruct_tune.train.run import train
from tests.train.conftest import load_weights, max_abs_diff, metrics


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one(make_cfg, tmp_path):
    steps = 10
    single = train(make_cfg(out=tmp_path / "single", batch_size=4, max_steps=steps, save_every=5))
    cfg = make_cfg(out=tmp_path / "ddp", batch_size=2, max_steps=steps, save_every=5)
    flags = ["--model", cfg.model, "--data", cfg.data, "--out", cfg.out, "--cache-dir", "none",
             "--quiet", "--batch-size", "2", "--max-steps", str(steps), "--save-every", "5",
             "--lr", str(cfg.lr), "--seed", "0", "--warmup-ratio", "0", "--log-every", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": "1"}
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
              "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
              "-m", "instruct_tune.cli", "train", *flags]
    done = subprocess.run(launch, env=env, capture_output=True, text=True, timeout=240)
    if done.returncode != 0 and "Address already in use" in done.stderr:
        pytest.skip("port collision with another process")
    assert done.returncode == 0, done.stderr[-3000:]

    a, b = metrics(single.parent), metrics(tmp_path / "ddp")
    assert [r["step"] for r in b] == list(range(1, steps + 1))
    worst = max(abs(x["loss"] - y["loss"]) for x, y in zip(a, b, strict=True))
    assert worst <= 1e-4, worst
    assert b[-1]["trained_tokens"] == a[-1]["trained_tokens"]
    assert max_abs_diff(load_weights(single), load_weights(tmp_path / "ddp" / "final")) < 1e-4

    ckpt = latest_checkpoint(tmp_path / "ddp")
    assert json.loads((ckpt / STATE_FILE).read_text())["world_size"] == 2
    assert sorted(p.name for p in ckpt.glob("random_states_*")) == ["random_states_0.pkl",
                                                                    "random_states_1.pkl"]
