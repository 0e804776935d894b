"""Stage 2: training (full or LoRA), checkpoints, distributed. Python API: `from instruct_tune.train import train`."""

from .run import train

__all__ = ["train"]
