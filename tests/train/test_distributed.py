"""The same command under torchrun (2 CPU processes, gloo): with the same global batch the loss
curve matches a single-process run, and a LoRA run resumes exactly."""

from __future__ import annotations

import json
import shutil

import pytest

from instruct_tune.errors import ConfigError
from instruct_tune.train.checkpoint import STATE_FILE, latest_checkpoint
from instruct_tune.train.run import train
from tests.train.conftest import load_weights, max_abs_diff, metrics, train_two_processes


def test_two_processes_match_one(make_cfg, tmp_path):
    steps = 10
    single = train(make_cfg(out=tmp_path / "single", batch_size=4, max_steps=steps, save_every=5))
    train_two_processes(make_cfg(out=tmp_path / "ddp", max_steps=steps), "--save-every", "5")

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


def test_two_process_lora_resume_is_exact(make_cfg, tmp_path):
    """Cut a 2-process LoRA run (dropout on: per-process RNG matters) back to its step-2
    checkpoint and resume: losses and final adapter equal the uninterrupted run's. It once
    resumed from the initial adapter: the checkpoint's weights file came out empty."""
    lora = ["--lora", "--lora-r", "4", "--lora-dropout", "0.1", "--save-every", "2"]
    full = tmp_path / "full"
    train_two_processes(make_cfg(out=full, max_steps=4, lr=1e-2), *lora)
    cut = tmp_path / "cut"
    shutil.copytree(full, cut)
    shutil.rmtree(cut / "final")
    shutil.rmtree(cut / "checkpoints" / "step-4")
    train_two_processes(make_cfg(out=cut, max_steps=4, lr=1e-2), *lora, "--resume")

    a, b = metrics(full), metrics(cut)
    assert [r["step"] for r in b] == [1, 2, 3, 4]
    assert max(abs(x["loss"] - y["loss"]) for x, y in zip(a, b, strict=True)) <= 1e-6
    assert max_abs_diff(load_weights(full / "final"), load_weights(cut / "final")) <= 1e-6


def test_a_lora_checkpoint_without_weights_is_refused(make_cfg, tmp_path):
    """Multi-process LoRA checkpoints of older versions hold an empty model.safetensors: resuming
    one must fail instead of silently restarting from the initial adapter."""
    from safetensors.torch import save_file

    kw = dict(out=tmp_path / "run", lora=True, lora_r=4, max_steps=2, save_every=1)
    train(make_cfg(**kw))
    shutil.rmtree(tmp_path / "run" / "final")
    shutil.rmtree(tmp_path / "run" / "checkpoints" / "step-2")
    save_file({}, str(tmp_path / "run" / "checkpoints" / "step-1" / "model.safetensors"))
    with pytest.raises(ConfigError, match="holds no trainable weights"):
        train(make_cfg(**kw, resume=True))
