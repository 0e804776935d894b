"""Stage 3: generation, stop rate, task metrics, before/after comparison. Python API: `from instruct_tune.evaluate import evaluate`."""

from .compare import evaluate

__all__ = ["evaluate"]
