"""The Python API names resolve to functions and classes, whatever was imported before."""

from __future__ import annotations

import importlib
import inspect

import instruct_tune


def test_every_top_level_name_resolves():
    for name in instruct_tune.__all__:
        obj = getattr(instruct_tune, name)
        assert not inspect.ismodule(obj), f"instruct_tune.{name} is a module"


def test_stage_functions_are_functions_after_their_modules_are_imported():
    importlib.import_module("instruct_tune.train.run")  # sets the package attribute `train`
    from instruct_tune.audit import audit
    from instruct_tune.evaluate import evaluate
    from instruct_tune.train import train

    for fn in (train, evaluate, audit):
        assert inspect.isfunction(fn), fn
    assert list(inspect.signature(train).parameters)[0] == "cfg"
