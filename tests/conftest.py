"""Session-wide fixtures: tiny tokenizers and model directories, built once per test run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tests import tiny

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Tiny models run fastest on one thread, and pytest-xdist already runs one worker per core.
torch.set_num_threads(1)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
STORIES = SHARED / "models" / "stories260k"
SHARED_DATA = SHARED / "data"

_TOKENIZERS: dict = {}


def get_tokenizer(kind: str):
    """Cached tiny tokenizer (also usable from hypothesis tests, which dislike fixtures)."""
    if kind not in _TOKENIZERS:
        _TOKENIZERS[kind] = tiny.build_tokenizer(kind)
    return _TOKENIZERS[kind]


@pytest.fixture(scope="session", params=["llama", "gpt2", "chatml"])
def tokenizer(request):
    return get_tokenizer(request.param)


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory) -> dict[str, Path]:
    """arch -> saved tiny model directory (llama, gpt2, qwen2)."""
    root = tmp_path_factory.mktemp("models")
    return {arch: tiny.save_model_dir(arch, root / arch) for arch in ("llama", "gpt2", "qwen2")}


@pytest.fixture(scope="session")
def stories_dir() -> Path:
    if not (STORIES / "config.json").is_file():
        pytest.skip("../shared/models/stories260k not present")
    return STORIES


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data not present")
    return SHARED_DATA
