"""Model directories for the evaluate tests (see tuned.py), built once per session."""

from __future__ import annotations

import pytest
import torch

from tests.evaluate import tuned

# Tiny models on a shared 2-core machine: one thread avoids oversubscription (20x slower here).
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def base_dir(tmp_path_factory):
    """Random tiny llama, alpaca template: never stops."""
    return tuned.save_base(tmp_path_factory.mktemp("eval") / "base")


@pytest.fixture(scope="session")
def tuned_dir(base_dir, tmp_path_factory):
    """base_dir tuned on tuned.RECORDS: answers them exactly and stops."""
    return tuned.save_tuned(base_dir, tmp_path_factory.mktemp("eval") / "tuned")


@pytest.fixture(scope="session")
def eval_file(tmp_path_factory):
    return tuned.write_jsonl(tuned.RECORDS, tmp_path_factory.mktemp("eval") / "eval.jsonl")
