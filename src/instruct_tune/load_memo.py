"""What transformers' Auto classes decided for a local model directory, remembered.

`AutoTokenizer` and `AutoConfig` import torch (~2-5 s) just to pick a class or read a number, which
is most of the time `inspect` and `audit` take on a warm cache. The first load runs them as always;
what they decided (the tokenizer's class, the context length) is then kept in a small JSON file,
and later loads of the same directory use the tokenizer class directly (transformers' tokenizer
classes import without torch) and read the context length from the memo.

A memo entry is keyed by the transformers and tokenizers versions, trust_remote_code, the
directory and the name, size and modification time of every file in it, so any edit to the
directory (or an upgrade) makes a new entry. Only classes from transformers itself are remembered
(never a model's own code), and only after the class, loaded directly, gave the very same tokenizer
as AutoTokenizer did. Entries live in ~/.cache/instruct-tune/models ($INSTRUCT_TUNE_MODEL_MEMO to
move them, "none" to turn this off); an unwritable or damaged memo is only skipped.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import json
import os
from importlib.metadata import version
from pathlib import Path

ENV_VAR = "INSTRUCT_TUNE_MODEL_MEMO"
_PROBES = ("Probe, text: 1 2\n", " ### Response:\n<|im_end|> é 🙂")


def _dir() -> Path | None:
    value = os.environ.get(ENV_VAR)
    if value and value.strip().lower() == "none":
        return None
    return Path(value) if value else Path.home() / ".cache" / "instruct-tune" / "models"


@functools.cache
def _versions() -> str:
    return f"transformers {version('transformers')}, tokenizers {version('tokenizers')}"


def _file(model_dir: Path, trust_remote_code: bool) -> Path | None:
    root = _dir()
    if root is None:
        return None
    h = hashlib.sha256(f"{_versions()}\0{bool(trust_remote_code)}\0{model_dir.resolve()}".encode())
    try:
        for f in sorted(model_dir.iterdir()):
            st = f.stat()
            h.update(f"\0{f.name}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    except OSError:
        return None
    return root / f"{h.hexdigest()[:32]}.json"


def recall(model_dir: Path, trust_remote_code: bool) -> dict:
    """What was remembered about this directory (empty when nothing, or unreadable)."""
    path = _file(model_dir, trust_remote_code)
    try:
        value = json.loads(path.read_text(encoding="utf-8")) if path else {}
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def remember(model_dir: Path, trust_remote_code: bool, **facts) -> None:
    path = _file(model_dir, trust_remote_code)
    if path is None:
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({**recall(model_dir, trust_remote_code), **facts}),
                       encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def _class_of(tokenizer) -> str | None:
    cls = type(tokenizer)
    return f"{cls.__module__}:{cls.__qualname__}" if cls.__module__.startswith("transformers.") \
        else None


def _fingerprint(tok) -> str:
    """Everything of a tokenizer our commands can observe, as one string."""
    backend = getattr(tok, "backend_tokenizer", None)
    parts = [type(tok).__qualname__,
             backend.to_str() if backend is not None else json.dumps(sorted(tok.get_vocab().items())),
             json.dumps(sorted(tok.get_added_vocab().items())), repr(tok.special_tokens_map),
             repr(getattr(tok, "chat_template", None)), repr(tok.model_max_length),
             repr((tok.padding_side, tok.truncation_side, getattr(tok, "is_fast", None)))]
    for text in _PROBES:
        parts.append(repr(tok(text)["input_ids"]) + repr(tok(text, add_special_tokens=False)["input_ids"]))
    return "\n".join(parts)


def load_direct(model_dir: Path, trust_remote_code: bool):
    """The tokenizer through the class AutoTokenizer picked for this directory before, without
    AutoTokenizer (and torch); None when there is no such memo or the class cannot load it."""
    name = recall(model_dir, trust_remote_code).get("tokenizer_class")
    if not isinstance(name, str) or not name.startswith("transformers.") or ":" not in name:
        return None
    module, qualname = name.split(":", 1)
    try:
        cls = getattr(importlib.import_module(module), qualname)
        return cls.from_pretrained(str(model_dir), trust_remote_code=bool(trust_remote_code),
                                   _from_auto=True)
    except Exception:  # any failure: AutoTokenizer runs and reports it in its usual words
        return None


def remember_tokenizer(model_dir: Path, trust_remote_code: bool, tokenizer) -> None:
    """Remember the class of a tokenizer AutoTokenizer loaded from `model_dir`, if loading it
    through that class directly gives the same tokenizer."""
    name = _class_of(tokenizer)
    if name is None:
        return
    module, qualname = name.split(":", 1)
    try:
        again = getattr(importlib.import_module(module), qualname).from_pretrained(
            str(model_dir), trust_remote_code=bool(trust_remote_code), _from_auto=True)
        same = _fingerprint(again) == _fingerprint(tokenizer)
    except Exception:  # cannot be loaded directly: keep using AutoTokenizer
        return
    if same:
        remember(model_dir, trust_remote_code, tokenizer_class=name)
