"""Stage 3: generation, stop rate, task metrics, before/after comparison.

`from instruct_tune.evaluate import evaluate` is the Python API (compare.evaluate); imported lazily so
that importing one module of this stage stays cheap.
"""


def __getattr__(name: str):
    if name == "evaluate":
        from .compare import evaluate

        return evaluate
    raise AttributeError(f"module 'instruct_tune.evaluate' has no attribute {name!r}")
