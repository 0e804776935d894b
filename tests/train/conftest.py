"""Trainer test fixtures: a small alpaca file with rows of very different lengths, and a config
builder with fast defaults (no tokenization cache, quiet, log every step)."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from instruct_tune.config import TrainConfig
from tests.tiny import WORDS


def write_alpaca(path: Path, n: int, seed: int = 0, max_words: int = 60) -> Path:
    """n alpaca rows; lengths vary from a few tokens to a few hundred on purpose."""
    rng = random.Random(seed)
    with path.open("w") as f:
        for _ in range(n):
            ins = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, max_words)))
            out = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, max_words)))
            f.write(json.dumps({"instruction": ins, "output": out}) + "\n")
    return path


@pytest.fixture(scope="session")
def alpaca_file(tmp_path_factory) -> Path:
    return write_alpaca(tmp_path_factory.mktemp("data") / "train.jsonl", 40)


@pytest.fixture(scope="session")
def eval_file(tmp_path_factory) -> Path:
    return write_alpaca(tmp_path_factory.mktemp("data") / "eval.jsonl", 6, seed=1, max_words=8)


@pytest.fixture
def make_cfg(model_dirs, alpaca_file, tmp_path):
    """TrainConfig for a tiny run: make_cfg(arch="llama", out=..., **overrides)."""
    def build(arch: str = "llama", out: Path | str | None = None, **kw) -> TrainConfig:
        values = dict(model=str(model_dirs[arch]), data=str(alpaca_file),
                      out=str(tmp_path / "run" if out is None else out), cache_dir="none", quiet=True, log_every=1,
                      batch_size=4, max_steps=6, save_every=3, lr=1e-3, seed=0, warmup_ratio=0.0)
        values.update(kw)
        return TrainConfig(**values)
    return build



def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of the safetensors files in a directory."""
    from safetensors.torch import load_file

    out: dict[str, torch.Tensor] = {}
    for f in sorted(Path(path).glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


def max_abs_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys(), sorted(set(a) ^ set(b))[:5]
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def metrics(out: Path) -> list[dict]:
    return [json.loads(x) for x in (Path(out) / "metrics.jsonl").read_text().splitlines() if x]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(port: int) -> list[str]:
    """The torchrun command line for 2 local processes (gloo on CPUs)."""
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
            "--master-addr", "127.0.0.1", "--master-port", str(port)]


def train_two_processes(cfg, *extra: str, launcher: Callable[[int], list[str]] = torchrun,
                        module: str = "instruct_tune.cli", ok: bool = True
                        ) -> subprocess.CompletedProcess:
    """`instruct-tune train` on 2 CPU processes with cfg's model, data, out, lr and max_steps
    (batch 2 per process): `launcher(port)` + `-m module train ...`. ok: assert it succeeded."""
    flags = ["--model", cfg.model, "--data", cfg.data, "--out", cfg.out, "--cache-dir", "none",
             "--quiet", "--batch-size", "2", "--max-steps", str(cfg.max_steps), "--lr",
             str(cfg.lr), "--seed", "0", "--warmup-ratio", "0", "--log-every", "1", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": "1"}
    root = Path(__file__).resolve().parents[2]  # `-m tests....` modules import from here
    done = subprocess.run([*launcher(free_port()), "-m", module, "train", *flags], env=env,
                          cwd=root, capture_output=True, text=True, timeout=240)
    if done.returncode != 0 and "Address already in use" in done.stderr:
        pytest.skip("port collision with another process")
    if ok:
        assert done.returncode == 0, done.stderr[-3000:]
    return done
