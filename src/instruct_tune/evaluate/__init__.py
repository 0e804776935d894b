"""Stage 3: generation, stop rate, task metrics, before/after comparison. Python API: `from instruct_tune.evaluate import evaluate`."""

from __future__ import annotations


def __getattr__(name: str):
    # Lazy: evaluate.report and evaluate.metrics stay cheap to import (no torch) for `report`.
    if name == "evaluate":
        from .compare import evaluate

        return evaluate
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["evaluate"]
