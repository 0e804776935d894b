"""Stage 2: training (full or LoRA), checkpoints, distributed.

`from instruct_tune.train import train` is the Python API (run.train); imported lazily so
that importing one module of this stage stays cheap.
"""


def __getattr__(name: str):
    if name == "train":
        from .run import train

        return train
    raise AttributeError(f"module 'instruct_tune.train' has no attribute {name!r}")
