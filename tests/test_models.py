"""Model paths and metadata (models.py): the model's context length caps --max-length in train,
inspect and audit; a mistyped local path fails at once instead of retrying the hub; saved model
directories are readable by others."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest
from transformers import LlamaConfig

from instruct_tune.cli import main
from instruct_tune.config import TrainConfig
from instruct_tune.errors import ModelLoadError
from instruct_tune.models import context_length, load_tokenizer, make_shareable
from instruct_tune.train.prepare import load_data
from instruct_tune.train.run import resolve
from tests.conftest import get_tokenizer

CONTEXT = 128
LONG = {"instruction": "word " * 300, "output": "long"}
SHORT = {"instruction": "Hi.", "output": "Yo."}


@pytest.fixture(scope="module")
def short_ctx_dir(tmp_path_factory) -> Path:
    """Tokenizer + config only (no weights needed): a model whose context is 16 positions."""
    path = tmp_path_factory.mktemp("short_ctx")
    get_tokenizer("llama").save_pretrained(path)
    LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                max_position_embeddings=CONTEXT).save_pretrained(path)
    return path


@pytest.fixture
def data(tmp_path) -> Path:
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in (SHORT, LONG, SHORT)))
    return path


def test_context_length_reads_the_config(short_ctx_dir, tmp_path):
    assert context_length(short_ctx_dir) == CONTEXT
    get_tokenizer("llama").save_pretrained(tmp_path)  # no config.json: unknown
    assert context_length(tmp_path) is None


def test_inspect_caps_max_length_at_the_context(short_ctx_dir, data, capsys):
    assert main(["inspect", str(data), "--model", str(short_ctx_dir), "--json"]) == 0
    out, err = capsys.readouterr()
    assert f"--max-length 2048 > the model's context {CONTEXT}; using {CONTEXT}" in err
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 2 and all(r["num_tokens"] <= CONTEXT for r in rows)


def test_inspect_keeps_a_max_length_within_the_context(short_ctx_dir, data, capsys):
    assert main(["inspect", str(data), "--model", str(short_ctx_dir), "--json",
                 "--max-length", "8"]) == 0
    assert "context" not in capsys.readouterr().err


def test_audit_caps_max_length_at_the_context(short_ctx_dir, data, capsys):
    main(["audit", str(data), "--model", str(short_ctx_dir), "--json"])
    assert f"using {CONTEXT}" in capsys.readouterr().err


def test_train_caps_max_length_at_the_context(short_ctx_dir, data, tmp_path, capsys):
    cfg = resolve(TrainConfig(model=str(short_ctx_dir), data=str(data), out=str(tmp_path / "o")))
    assert cfg.max_length == CONTEXT  # so config.yaml, the plan and --resume all use it
    assert f"using {CONTEXT}" in capsys.readouterr().err
    loaded = load_data(cfg, lambda _: None)
    assert len(loaded.train) == 2 and all(len(e.input_ids) <= CONTEXT for e in loaded.train)


@pytest.mark.parametrize("name", ["runs/nope", "./nope", "a/b/c"])
def test_missing_local_path_fails_at_once(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    t0 = time.perf_counter()
    with pytest.raises(ModelLoadError, match=f"{name}: no such directory"):
        load_tokenizer(name)
    assert time.perf_counter() - t0 < 5  # no hub retries


def test_training_run_dir_suggests_final(tmp_path):
    run = tmp_path / "pack"
    (run / "final").mkdir(parents=True)
    (run / "config.yaml").write_text("model: x\n")
    with pytest.raises(ModelLoadError, match=r"training run directory; did you mean .*pack/final\?"):
        load_tokenizer(run)


def test_make_shareable_opens_private_dirs_and_files(tmp_path):
    root = tmp_path / "model"
    (root / "sub").mkdir(parents=True, mode=0o700)
    root.chmod(0o700)
    (root / "sub" / "w.safetensors").write_bytes(b"x")
    (root / "sub" / "w.safetensors").chmod(0o600)
    umask = os.umask(0o022)
    try:
        make_shareable(root)
    finally:
        os.umask(umask)
    assert stat.S_IMODE(root.stat().st_mode) == 0o755
    assert stat.S_IMODE((root / "sub").stat().st_mode) == 0o755
    assert stat.S_IMODE((root / "sub" / "w.safetensors").stat().st_mode) == 0o644
