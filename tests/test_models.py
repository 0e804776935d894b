"""Model paths and metadata (models.py): the model's context length caps --max-length in train,
inspect and audit; a mistyped local path fails at once instead of retrying the hub; a hub name
loads from the Hugging Face cache with no network, and fails in a moment, saying what to do, when
it is not cached and the hub cannot be reached; saved model directories are readable by others."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import LlamaConfig

from instruct_tune import hub
from instruct_tune.cli import main
from instruct_tune.config import TrainConfig
from instruct_tune.errors import ModelLoadError
from instruct_tune.models import (
    adapter_base,
    context_length,
    load_model,
    load_tokenizer,
    local_model_dir,
    make_shareable,
    parameter_count,
)
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
    assert f"--max-length 2048 (the default) > the model's context {CONTEXT}; using {CONTEXT}" in err
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


@pytest.mark.parametrize("name", ["runs/nope", "./nope", "a/b/c", "/nonexistent/m",
                                  "~/no-such-model-dir", "nope/config.json",
                                  "nope/model.safetensors", "./Qwen2.5-0.5B"])
def test_missing_local_path_fails_at_once(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    t0 = time.perf_counter()
    with pytest.raises(ModelLoadError, match=f"{name}: no such directory"):
        load_tokenizer(name)
    assert time.perf_counter() - t0 < 5  # no hub retries


# ---------------------------------------------------------------------------------------------
# Hub names: the Hugging Face cache first (no network), then one short probe of the hub

HUB_NAMES = ["Qwen/Qwen2.5-0.5B", "TinyLlama/TinyLlama-1.1B-Chat-v1.0", "gpt2", "org/m_v1.0"]
NAME = "org/Tiny-0.5B"  # a dot in the name, as in most real ones


@pytest.mark.parametrize("name", HUB_NAMES)
def test_hub_names_are_not_local_paths(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert local_model_dir(name) is None


@pytest.fixture
def no_network(monkeypatch) -> list:
    """Every connection attempt fails at once and is recorded; the hub probe must not run."""
    tries: list = []

    def refuse(*args, **kwargs):
        tries.append(args[:2])
        raise socket.gaierror("no network in this test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(hub, "hub_reachable", lambda: pytest.fail("the hub was probed"))
    return tries


@pytest.fixture
def hf_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face hub cache (HF_HUB_CACHE), with downloads allowed as for most users
    (conftest sets HF_HUB_OFFLINE=1, which huggingface_hub read at import: undo both)."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return cache


def cache_model(cache: Path, name: str, model_dir: Path, keep=lambda f: True) -> Path:
    """Put model_dir's files into the cache as `hf download name` lays them out: blobs, a
    snapshot of symlinks to them, refs/main naming the snapshot. Returns the snapshot dir."""
    repo, commit = cache / f"models--{name.replace('/', '--')}", "0123456789abcdef" * 2 + "01234567"
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for i, f in enumerate(f for f in sorted(model_dir.iterdir()) if keep(f)):
        shutil.copy(f, repo / "blobs" / f"blob{i}")
        (snapshot / f.name).symlink_to(repo / "blobs" / f"blob{i}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def test_cached_hub_model_loads_with_no_network(hf_cache, no_network, model_dirs, tmp_path):
    """Everything that reads a model (tokenizer, weights, context, size, a LoRA adapter's base)
    finds a cached hub name in the cache, and not one connection is tried."""
    from peft import LoraConfig, PeftModel, get_peft_model

    cache_model(hf_cache, NAME, model_dirs["llama"])
    t0 = time.perf_counter()
    tok = load_tokenizer(NAME)
    model = load_model(NAME)
    assert tok.eos_token_id is not None
    saved = load_file(str(model_dirs["llama"] / "model.safetensors"))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in saved.items())
    assert context_length(NAME) == model.config.max_position_embeddings
    assert parameter_count(NAME) == sum(v.numel() for v in saved.values())
    adapter = tmp_path / "adapter"
    get_peft_model(model, LoraConfig(r=2, target_modules="all-linear")).save_pretrained(
        adapter, save_embedding_layers=False)
    assert adapter_base(adapter) == NAME  # the hub name, not the cache path it was read from
    assert isinstance(load_model(adapter), PeftModel)
    assert context_length(adapter) == model.config.max_position_embeddings
    assert time.perf_counter() - t0 < 30
    assert no_network == []


def test_cli_runs_a_cached_hub_model(hf_cache, no_network, model_dirs, capsys):
    cache_model(hf_cache, NAME, model_dirs["llama"])
    assert main(["generate", "Say yes.", "--model", NAME, "--max-new-tokens", "2"]) == 0
    assert capsys.readouterr().out.strip()
    assert no_network == []


def unreachable(monkeypatch) -> list:
    """The hub probe answers "unreachable" (and counts its calls); connections fail at once."""
    probes: list = []
    monkeypatch.setattr(hub, "hub_reachable", lambda: probes.append(1) or False)
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: pytest.fail(f"connection {a[:2]}"))
    return probes


@pytest.mark.parametrize("load", [load_tokenizer, load_model], ids=["tokenizer", "model"])
def test_uncached_hub_name_fails_fast_when_the_hub_is_unreachable(load, hf_cache, monkeypatch,
                                                                   capfd):
    probes = unreachable(monkeypatch)
    t0 = time.perf_counter()
    with pytest.raises(ModelLoadError) as e:
        load(NAME)
    assert time.perf_counter() - t0 < 1
    assert probes == [1]
    msg = str(e.value)
    for words in (f"'{NAME}'", "not in the Hugging Face cache", str(hf_cache), "cannot be reached",
                  f"`hf download {NAME}`", f"`huggingface-cli download {NAME}`", "--model DIR",
                  "HF_HUB_OFFLINE=1"):
        assert words in msg, f"{words!r} not in: {msg}"
    assert "Retry" not in capfd.readouterr().err
    assert context_length(NAME) is None and parameter_count(NAME) is None


def test_offline_fails_with_the_cache_message_without_probing(hf_cache, no_network, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match=r"not in the Hugging Face cache .* downloads are off "
                                             r"\(HF_HUB_OFFLINE=1\).*hf download"):
        load_model(NAME)
    assert no_network == []


def test_part_cached_hub_model_says_what_is_missing(hf_cache, model_dirs, monkeypatch):
    """Only the tokenizer was cached (as `inspect` fetches it): it loads; the model does not,
    and the message says the cache has only part of it."""
    snapshot = cache_model(hf_cache, NAME, model_dirs["llama"],
                           keep=lambda f: f.name.startswith("tokenizer"))
    probes = unreachable(monkeypatch)
    assert load_tokenizer(NAME).eos_token_id is not None
    assert probes == []
    with pytest.raises(ModelLoadError, match=f"only partly in the Hugging Face cache "
                                             f"\\({snapshot} has no model files\\)"):
        load_model(NAME)
    assert probes == [1]


def test_probe_asks_hf_endpoint(monkeypatch):
    """The probe goes to HF_ENDPOINT: a server that answers (any status) is reachable, a closed
    port is not, at once."""
    import http.server
    import threading

    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # conftest's HF_HUB_OFFLINE=1, read
    monkeypatch.delenv("HF_HUB_OFFLINE")                      # at import, blocks every request
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    try:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_port}/")
        assert hub.hub_reachable()
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed.getsockname()[1]}")
        t0 = time.perf_counter()
        assert not hub.hub_reachable()
        assert time.perf_counter() - t0 < hub.PROBE_TIMEOUT_S
    finally:
        server.shutdown()
        closed.close()


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


def test_a_bare_training_checkpoint_is_named_as_such(tmp_path):
    (tmp_path / "trainer_state.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelLoadError, match="training checkpoint .* final/"):
        load_tokenizer(tmp_path)
