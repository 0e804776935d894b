"""load_memo: a model directory loaded once is loaded again without AutoTokenizer/AutoConfig (and
torch), to the very same tokenizer and context length; any change to the directory, and any
model with its own code, goes through transformers' Auto classes as before."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from instruct_tune import load_memo
from instruct_tune.errors import ModelLoadError
from instruct_tune.models import context_length, load_tokenizer


@pytest.fixture
def memo(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "memo"
    monkeypatch.setenv(load_memo.ENV_VAR, str(path))
    return path


def test_second_load_is_the_same_tokenizer_without_torch(memo, model_dirs):
    model = model_dirs["llama"]
    first = load_tokenizer(model)
    assert context_length(model) is not None
    assert load_memo.recall(model, False)["tokenizer_class"].startswith("transformers.")
    code = ("import sys, json; from instruct_tune.models import load_tokenizer, context_length; "
            f"t = load_tokenizer({str(model)!r}); "
            "print(json.dumps(['torch' in sys.modules, type(t).__name__, "
            f"t('Hi there, <s> x')['input_ids'], t.pad_token, context_length({str(model)!r})]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, load_memo.ENV_VAR: str(memo)}).stdout
    torch_loaded, name, ids, pad, context = json.loads(out.strip().splitlines()[-1])
    assert not torch_loaded
    assert (name, ids, pad) == (type(first).__name__, first("Hi there, <s> x")["input_ids"],
                                first.pad_token)
    assert context == context_length(model)


def test_a_changed_directory_is_not_read_from_the_memo(memo, tmp_path, model_dirs):
    import shutil

    model = Path(shutil.copytree(model_dirs["gpt2"], tmp_path / "m"))
    load_tokenizer(model)
    assert load_memo.recall(model, False)
    cfg = model / "tokenizer_config.json"
    cfg.write_text(json.dumps({**json.loads(cfg.read_text()), "model_max_length": 7}))
    assert load_memo.recall(model, False) == {}
    assert load_tokenizer(model).model_max_length == 7


def test_remote_code_is_never_remembered(memo, tmp_path, model_dirs):
    from tests.test_loading_safety import remote_code_dir

    model, marker = remote_code_dir(model_dirs["llama"], tmp_path, tokenizer=True)
    for _ in range(2):  # the second load is refused exactly like the first
        with pytest.raises(ModelLoadError, match="trust-remote-code"):
            load_tokenizer(model)
    assert not marker.exists() and "tokenizer_class" not in load_memo.recall(model, False)
    load_tokenizer(model, trust_remote_code=True)  # the user opted in: its own class, not kept
    assert marker.exists() and "tokenizer_class" not in load_memo.recall(model, True)


def test_none_turns_it_off(tmp_path, monkeypatch, model_dirs):
    monkeypatch.setenv(load_memo.ENV_VAR, "none")
    load_tokenizer(model_dirs["gpt2"])
    assert load_memo.recall(model_dirs["gpt2"], False) == {}
