"""instruct-tune: turn a base causal LM into an instruction follower by supervised fine-tuning.

The Python API mirrors the CLI; names are imported lazily so `import instruct_tune` stays fast.
"""

from __future__ import annotations

import importlib
import warnings

__version__ = "0.1.0"

# peft reads transformers' deprecated `is_gradient_checkpointing`: noise for our users, whatever
# they call (the CLI or the Python API). Only this message is hidden.
warnings.filterwarnings("ignore", message=r".*is_gradient_checkpointing\W? is deprecated",
                        category=FutureWarning)

_API = {
    "Record": "instruct_tune.data.records",
    "Message": "instruct_tune.data.records",
    "Source": "instruct_tune.data.records",
    "load_records": "instruct_tune.data.load",
    "load_records_report": "instruct_tune.data.load",
    "get_template": "instruct_tune.data.templates",
    "Template": "instruct_tune.data.templates",
    "build_example": "instruct_tune.data.tokenize",
    "build_examples": "instruct_tune.data.tokenize",
    "Example": "instruct_tune.data.tokenize",
    "load_model": "instruct_tune.models",
    "load_tokenizer": "instruct_tune.models",
}
# train, evaluate and audit share their names with their stage's package (instruct_tune.train is
# the package once any of its modules is imported), so they are imported from there:
# `from instruct_tune.train import train`, `...evaluate import evaluate`, `...audit import audit`.

__all__ = sorted(_API) + ["__version__"]


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'instruct_tune' has no attribute {name!r}")
