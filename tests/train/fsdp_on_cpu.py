"""`python -m tests.train.fsdp_on_cpu train ...`: the instruct-tune CLI with accelerate's FSDP
switched on for CPU processes. Test-only.

accelerate turns FSDP on only for GPUs and other accelerators (on CPUs it keeps DDP, and
instruct-tune refuses that: train/sharding.py). torch's FSDP2 (`fully_shard`) itself runs on CPUs
with gloo, so this lifts that one gate and leaves the rest to accelerate: its FSDP2 wrapping,
sharded (DCP) checkpoints and state-dict gathering are the code GPU runs use, on another device.
"""

from __future__ import annotations

import sys

from accelerate.state import AcceleratorState, PartialState
from accelerate.utils import DistributedType

_init = AcceleratorState.__init__


def _init_with_fsdp_on_cpu(self, *args, fsdp_plugin=None, **kwargs):
    _init(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
    # What accelerate does for a GPU launch (state.py, the MULTI_GPU branch) when fsdp_plugin is set.
    if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
        self.distributed_type = DistributedType.FSDP
        self.fsdp_plugin = fsdp_plugin
        PartialState._shared_state["distributed_type"] = DistributedType.FSDP


AcceleratorState.__init__ = _init_with_fsdp_on_cpu

if __name__ == "__main__":
    from instruct_tune.cli import main

    sys.exit(main(sys.argv[1:]))
