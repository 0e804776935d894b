"""FSDP: refuse it where accelerate would silently not shard, and tell the loss when it is on.

accelerate (1.16) turns FSDP on only for GPUs and other accelerators: launched on CPUs with
`--use_fsdp` (or a config with `distributed_type: FSDP`) it runs plain DDP, every process holding
the whole model, and says nothing. torch's FSDP2 itself runs on CPUs (gloo); tests/train/test_fsdp.py
lifts accelerate's device gate to run accelerate's own FSDP2 code on 2 CPU processes. FSDP1
through accelerate fails on CPUs inside accelerate (`sync_module_states`, then "Inconsistent
compute device and `device_id`"), so only FSDP2 is tested.
"""

from __future__ import annotations

import os

from torch import nn

from ..errors import ConfigError


def fsdp_requested() -> bool:
    """Whether the launcher asked for FSDP (`accelerate launch --use_fsdp` or an accelerate config
    with `distributed_type: FSDP` both set ACCELERATE_USE_FSDP)."""
    return os.environ.get("ACCELERATE_USE_FSDP", "").strip().lower() in ("1", "true", "yes", "on")


def check_fsdp(accelerator) -> None:
    """Raise when FSDP was asked for on several processes but accelerate did not turn it on (CPUs):
    the run would be DDP, with none of the memory FSDP was chosen to save."""
    if not fsdp_requested() or accelerator.distributed_type.value == "FSDP":
        return
    if accelerator.num_processes > 1:
        import accelerate

        raise ConfigError(
            f"FSDP was requested (ACCELERATE_USE_FSDP=true, from `accelerate launch --use_fsdp` or "
            f"an accelerate config with distributed_type: FSDP), but accelerate "
            f"{accelerate.__version__} shards models only on GPUs and other accelerators; on "
            f"{accelerator.device.type} it would silently run DDP, every process holding the whole "
            "model. For data-parallel training on CPUs launch without FSDP: `torchrun "
            "--nproc-per-node N -m instruct_tune.cli train ...`.")


def is_sharded(model: nn.Module) -> bool:
    """Whether `model` (as prepared by accelerate) is wrapped by FSDP (1 or 2) anywhere."""
    import torch.distributed as dist

    if not dist.is_available():
        return False
    from torch.distributed.fsdp import FSDPModule, FullyShardedDataParallel

    return any(isinstance(m, (FSDPModule, FullyShardedDataParallel)) for m in model.modules())
