"""FSDP through accelerate on 2 CPU processes (gloo), as test_distributed.py tests DDP: the loss
curve matches one process, a checkpoint resumes exactly, LoRA writes a loadable adapter.

accelerate runs FSDP only on GPUs and other accelerators; on CPUs instruct-tune refuses it (last
test). The other tests launch `tests.train.fsdp_on_cpu`, which lifts accelerate's device gate so
its FSDP2 code (fully_shard, sharded DCP checkpoints, gathering the final state dict) runs on CPUs.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from instruct_tune.train.checkpoint import latest_checkpoint
from instruct_tune.train.run import train
from tests.train.conftest import load_weights, max_abs_diff, metrics, train_two_processes

pytestmark = pytest.mark.slow  # ~10-20 s per 2-process launch on 2 cores

SHIM = "tests.train.fsdp_on_cpu"


@pytest.fixture
def fsdp(tmp_path) -> Callable[[int], list[str]]:
    """A launcher: `accelerate launch` with an FSDP2 config file, as `accelerate config` writes."""
    config = tmp_path / "accelerate_fsdp.yaml"

    def launcher(port: int) -> list[str]:
        config.write_text(f"""compute_environment: LOCAL_MACHINE
distributed_type: FSDP
num_machines: 1
num_processes: 2
machine_rank: 0
main_process_ip: 127.0.0.1
main_process_port: {port}
mixed_precision: 'no'
use_cpu: false
fsdp_config:
  fsdp_version: 2
  fsdp_auto_wrap_policy: TRANSFORMER_BASED_WRAP
  fsdp_state_dict_type: SHARDED_STATE_DICT
  fsdp_reshard_after_forward: true
  fsdp_cpu_ram_efficient_loading: false
""")
        return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config)]
    return launcher


def _losses(out: Path) -> list[float]:
    return [r["loss"] for r in metrics(out)]


def _assert_sharded(ckpt: Path) -> None:
    """Each process wrote its own shard (DDP would write one model.safetensors instead)."""
    assert not (ckpt / "model.safetensors").exists()
    assert sorted(p.name for p in (ckpt / "pytorch_model_fsdp_0").glob("*.distcp")) == [
        "__0_0.distcp", "__1_0.distcp"]


def _resume_from(run: Path, cut: Path, step: int) -> None:
    """Copy a finished run as it was when checkpoint `step` had just been written."""
    shutil.copytree(run, cut)
    shutil.rmtree(cut / "final")
    for ckpt in (cut / "checkpoints").glob("step-*"):
        if int(ckpt.name.split("-")[1]) > step:
            shutil.rmtree(ckpt)


def test_fsdp_matches_one_process_and_resumes_exactly(make_cfg, fsdp, tmp_path):
    steps = 10
    single = train(make_cfg(out=tmp_path / "single", batch_size=4, max_steps=steps, save_every=5))
    run = tmp_path / "fsdp"
    train_two_processes(make_cfg(out=run, max_steps=steps), "--save-every", "5", launcher=fsdp,
                        module=SHIM)

    a, b = metrics(single.parent), metrics(run)
    assert [r["step"] for r in b] == list(range(1, steps + 1))
    worst = max(abs(x["loss"] - y["loss"]) for x, y in zip(a, b, strict=True))
    assert worst <= 1e-5, worst
    assert b[-1]["trained_tokens"] == a[-1]["trained_tokens"]
    # final/ is a plain model directory gathered from the shards
    assert max_abs_diff(load_weights(single), load_weights(run / "final")) < 1e-4
    _assert_sharded(latest_checkpoint(run))

    cut = tmp_path / "cut"
    _resume_from(run, cut, 5)
    train_two_processes(make_cfg(out=cut, max_steps=steps), "--save-every", "5", "--resume",
                        launcher=fsdp, module=SHIM)
    assert [r["step"] for r in metrics(cut)] == list(range(1, steps + 1))
    assert _losses(cut) == pytest.approx(_losses(run), abs=1e-6)
    assert max_abs_diff(load_weights(run / "final"), load_weights(cut / "final")) <= 1e-6


def test_fsdp_lora_writes_a_loadable_adapter_and_resumes_exactly(make_cfg, fsdp, tmp_path):
    from peft import PeftModel

    from instruct_tune.models import load_model

    lora = dict(lora=True, lora_r=4, lora_dropout=0.0, lr=1e-2, max_steps=4)
    single = train(make_cfg(out=tmp_path / "single", batch_size=4, save_every=2, **lora))
    run = tmp_path / "fsdp"
    flags = ["--lora", "--lora-r", "4", "--lora-dropout", "0", "--save-every", "2"]
    train_two_processes(make_cfg(out=run, **lora), *flags, launcher=fsdp, module=SHIM)

    assert max(abs(x - y) for x, y in zip(_losses(single.parent), _losses(run), strict=True)) <= 1e-5
    assert (run / "final" / "adapter_config.json").is_file()
    assert max_abs_diff(load_weights(single), load_weights(run / "final")) < 1e-4
    _assert_sharded(latest_checkpoint(run))
    ids = torch.tensor([[1, 5, 9, 14, 3]])
    want = load_model(single).eval()
    got = load_model(run / "final").eval()
    assert isinstance(got, PeftModel)
    with torch.no_grad():
        assert torch.allclose(got(input_ids=ids).logits, want(input_ids=ids).logits, atol=1e-4)

    cut = tmp_path / "cut"
    _resume_from(run, cut, 2)
    train_two_processes(make_cfg(out=cut, **lora), *flags, "--resume", launcher=fsdp, module=SHIM)
    assert _losses(cut) == pytest.approx(_losses(run), abs=1e-6)
    assert max_abs_diff(load_weights(run / "final"), load_weights(cut / "final")) <= 1e-6


def test_fsdp_on_cpu_is_refused(make_cfg, fsdp, tmp_path):
    """Without the shim accelerate would run DDP and call it nothing: a clear error instead,
    before anything is loaded or written."""
    out = tmp_path / "run"
    done = train_two_processes(make_cfg(out=out, max_steps=2), launcher=fsdp, ok=False)
    assert done.returncode != 0
    assert "shards models only on GPUs" in done.stderr, done.stderr[-3000:]
    assert "torchrun --nproc-per-node" in done.stderr
    assert not out.exists()
