"""Model directories for the serve tests, shaped like the trainer's final/ (see tests/evaluate/tuned.py)."""

from __future__ import annotations

import pytest
import torch

from tests.evaluate import tuned

# Tiny models on a shared 2-core machine: one thread avoids oversubscription.
torch.set_num_threads(1)



@pytest.fixture(scope="session")
def serve_root(tmp_path_factory):
    return tmp_path_factory.mktemp("serve")


@pytest.fixture(scope="session")
def base_dir(serve_root):
    return tuned.save_base(serve_root / "base")


@pytest.fixture(scope="session")
def tuned_dir(base_dir, serve_root):
    """Alpaca llama that answers tuned.RECORDS exactly and stops."""
    return tuned.save_tuned(base_dir, serve_root / "tuned")


@pytest.fixture(scope="session")
def chatml_dir(serve_root):
    """Qwen2 + chatml whose tokenizer EOS is <|endoftext|>, tuned to end replies with <|im_end|>:
    the end-of-turn token differs from EOS, as on Qwen base models."""
    base = tuned.save_base(serve_root / "chatml_base", arch="qwen2", template="chatml",
                           eos="<|endoftext|>")
    return tuned.save_tuned(base, serve_root / "chatml_tuned")


@pytest.fixture(scope="session")
def lora_dir(base_dir, serve_root):
    return tuned.save_lora(base_dir, serve_root / "lora")
