"""Load models and tokenizers safely: safetensors only and no remote code, unless the user opts in.

Loading a file must never run code. Pickle-based weights (.bin/.pt) are refused unless
--allow-pickle, and even then transformers/peft read them with torch.load(weights_only=True), so a
pickle that holds anything but tensors is refused too. A directory's own Python code (config.json
`auto_map`) never runs without --trust-remote-code. Every failure is a ModelLoadError saying what
is wrong, where, and what to do. A directory holding a LoRA adapter (adapter_config.json) loads as
base model + adapter. A hub name ('org/model') loads from the Hugging Face cache without the
network when it is there, else from the hub (see hub.py).
"""

from __future__ import annotations

import json
import math
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from . import load_memo
from .errors import ModelLoadError
from .hub import cached_snapshot, is_hub_name, resolve_hub, shadowing_folder
from .model_safety import (
    NOT_WEIGHTS,
    PICKLE_SUFFIXES,
    auto_map_files,
    check_remote_code,
    check_weights,
    remote_code_error,
)

if TYPE_CHECKING:
    import torch

TOKENIZER_FILES = ("tokenizer", "vocab", "merges", "spiece", "sentencepiece")  # name prefixes


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:300]


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelLoadError(f"{path}: not valid JSON ({e}). The file is damaged: re-save or "
                             "re-download the model.") from None
    if not isinstance(value, dict):
        raise ModelLoadError(f"{path}: expected a JSON object, found {type(value).__name__}.")
    return value


def local_model_dir(name_or_path: str | os.PathLike) -> Path | None:
    """The model directory; None for a hub name. A missing path or a file is a ModelLoadError."""
    name = str(name_or_path)
    if not name:
        raise ModelLoadError("No model given: pass --model DIR (a local model directory) or a hub "
                             "name such as 'org/model'.")
    path = Path(name).expanduser()
    if path.is_dir():
        if (not (path / "config.json").is_file() and not is_adapter_dir(path)
                and (path / "final").is_dir()):
            raise ModelLoadError(f"{name} is a training run directory; did you mean "
                                 f"{path / 'final'}?")
        return path
    if path.exists():
        raise ModelLoadError(f"{name} is a file; --model expects a model directory (config.json, "
                             f"*.safetensors, tokenizer files), e.g. {path.parent}.")
    # A path-like name fails now: transformers would otherwise look it up on the hub.
    if is_hub_name(name):
        return None
    folder = shadowing_folder(name)
    why = f" (./{folder} is a folder, so this is read as a local path)" if folder else ""
    raise ModelLoadError(f"{name}: no such directory{why}. Expected a local model directory or a "
                         "hub name such as 'org/model'.")


def model_source(name_or_path: str | os.PathLike, what: str = "model") -> Path | str:
    """Where to load `what` ("model", "tokenizer" or "config") from: a local directory (the one
    given, or a hub name's snapshot in the Hugging Face cache when it holds `what`), or the hub
    name itself when it must be downloaded. Fails fast when it is neither local, cached nor
    downloadable (hub.resolve_hub)."""
    path = local_model_dir(name_or_path)
    if path is not None:
        return path
    return resolve_hub(str(name_or_path), what, _HAS[what])


def _has_tokenizer_files(path: Path) -> bool:
    return any(f.name.startswith(TOKENIZER_FILES) or f.suffix in (".model", ".tiktoken")
               for f in path.iterdir())


def _has_weights(path: Path) -> bool:
    return any(f.is_file() and (f.suffix == ".safetensors" or f.name.endswith(PICKLE_SUFFIXES)
                                and not f.name.startswith(NOT_WEIGHTS)) for f in path.iterdir())


def _has_config(path: Path) -> bool:
    return (path / "config.json").is_file() or is_adapter_dir(path)


# What a cached snapshot must hold to be loaded from; a part-cached repo (e.g. only its tokenizer
# was fetched, by `inspect`) downloads the rest when the hub is reachable.
_HAS = {"tokenizer": _has_tokenizer_files, "config": _has_config,
        "model": lambda p: _has_config(p) and _has_weights(p)}


def _hub_error(name: str, what: str, e: BaseException) -> ModelLoadError:
    """The hub was reachable, yet the download failed: a wrong name, a gated or private repo."""
    return ModelLoadError(f"Could not load {what} '{name}': not a local directory, and not found "
                          f"in the Hugging Face cache or hub ({_first_line(e)}). Check the name "
                          "(and for a gated or private model, your access: `hf auth login`), or "
                          "pass a local model directory.")


def is_adapter_dir(name_or_path: str | os.PathLike) -> bool:
    return (Path(name_or_path) / "adapter_config.json").is_file()


def adapter_base(path: str | os.PathLike) -> str:
    """The base model a LoRA adapter directory was trained on (adapter_config.json)."""
    cfg_path = Path(path) / "adapter_config.json"
    base = _read_json(cfg_path).get("base_model_name_or_path")
    if not isinstance(base, str) or not base:
        raise ModelLoadError(f"{cfg_path} [base_model_name_or_path]: missing; set it to the base "
                             "model directory or hub name the adapter was trained on.")
    return base


def _refuse_bare_checkpoint(path: Path) -> None:
    """A training checkpoint without model files (FSDP/DeepSpeed shards, or an older version's)
    is not a model directory: say what it is rather than that a tokenizer is missing."""
    if (path / "trainer_state.json").is_file() and not any(
            (path / f).is_file() for f in ("config.json", "adapter_config.json")):
        raise ModelLoadError(f"{path} is a training checkpoint holding only the trainer's state "
                             "(sharded or from an older version), not a model directory. Use the "
                             "run's final/ directory, or continue training from it with --resume.")


def load_tokenizer(name_or_path: str | os.PathLike, trust_remote_code: bool = False):
    """Load a tokenizer; a pad token is set to EOS when missing (labels are masked by position,
    so EOS stays trained even when pad == eos). A local directory loaded before is loaded through
    the class AutoTokenizer picked then, without importing torch (load_memo.py)."""
    source = model_source(name_or_path, "tokenizer")
    path = source if isinstance(source, Path) else None
    if path is not None and not _has_tokenizer_files(path):
        _refuse_bare_checkpoint(path)
        raise ModelLoadError(f"{path} has no tokenizer files (tokenizer.json, "
                             "tokenizer_config.json, ...). Save the tokenizer next to the weights "
                             f"with tokenizer.save_pretrained('{path}').")
    configs = {}  # damaged JSON is named as such, not reported as "no tokenizer"
    for fname in ("tokenizer_config.json", "config.json"):
        if path is not None and (path / fname).is_file():
            configs[fname] = _read_json(path / fname)
    tok = load_memo.load_direct(path, trust_remote_code) if path is not None else None
    if tok is None:
        tok = _auto_tokenizer(source, path, name_or_path, configs, trust_remote_code)
        if path is not None:
            load_memo.remember_tokenizer(path, trust_remote_code, tok)
    if tok.eos_token_id is None:
        raise ModelLoadError(
            f"The tokenizer of '{name_or_path}' has no EOS token, so a tuned model could never "
            "learn to stop. Set one (tokenizer.eos_token = '...'; tokenizer.save_pretrained(...)).")
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def _auto_tokenizer(source, path: Path | None, name_or_path, configs: dict,
                    trust_remote_code: bool):
    from transformers import AutoTokenizer

    try:
        # trust_remote_code is always a bool here: None would make transformers prompt on stdin.
        return AutoTokenizer.from_pretrained(str(source),
                                             trust_remote_code=bool(trust_remote_code))
    except Exception as e:  # transformers and tokenizers raise many types (even bare Exception)
        if "trust_remote_code" in str(e):
            fname, cfg = next(((n, c) for n, c in configs.items()
                               if isinstance(c.get("auto_map"), dict)), ("", {}))
            raise remote_code_error(path / fname if path and fname else Path(str(name_or_path)),
                                     auto_map_files(cfg.get("auto_map", {}))) from None
        if path is None:
            raise _hub_error(str(name_or_path), "tokenizer", e) from None
        raise ModelLoadError(
            f"{path} has no loadable tokenizer (tokenizer.json / tokenizer_config.json): "
            f"{type(e).__name__}: {_first_line(e)}. Save the tokenizer next to the weights with "
            f"tokenizer.save_pretrained('{path}').") from None


def load_model(name_or_path: str | os.PathLike, *, dtype: torch.dtype | None = None,
               trust_remote_code: bool = False, allow_pickle: bool = False):
    """Load a causal LM (or base + LoRA adapter) for training or inference (dtype: float32
    unless given)."""
    import torch
    from transformers import AutoModelForCausalLM

    dtype = torch.float32 if dtype is None else dtype
    source = model_source(name_or_path, "model")
    path = source if isinstance(source, Path) else None
    if path is not None and is_adapter_dir(path):
        return _load_adapter(path, dtype, trust_remote_code, allow_pickle)
    if path is not None:
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{path} is not a model directory (no config.json). Point --model "
                                 "at the directory that model.save_pretrained() wrote.")
        check_remote_code(path, _read_json(path / "config.json"), trust_remote_code)
        check_weights(path, allow_pickle)
    where = str(path or name_or_path)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(source), dtype=dtype, trust_remote_code=bool(trust_remote_code),
            use_safetensors=None if allow_pickle else True)
    except Exception as e:
        raise _load_error(e, where, path is None) from None
    if path is not None and local_model_dir(name_or_path) is None:
        # Loaded from the cache, it keeps its hub name (what transformers records when it reads
        # the cache itself): a LoRA adapter's default base_model_name_or_path, for one.
        model.name_or_path = model.config.name_or_path = str(name_or_path)
    return model


def _load_adapter(path: Path, dtype, trust_remote_code: bool, allow_pickle: bool):
    from peft import PeftModel

    base = adapter_base(path)
    try:
        model = load_model(base, dtype=dtype, trust_remote_code=trust_remote_code,
                           allow_pickle=allow_pickle)
    except ModelLoadError as e:
        raise ModelLoadError(
            f"{path} is a LoRA adapter whose base model could not be loaded: {e}\n(the base is "
            f"base_model_name_or_path in {path / 'adapter_config.json'})") from None
    check_weights(path, allow_pickle)
    try:
        return PeftModel.from_pretrained(model, str(path))
    except Exception as e:
        raise _load_error(e, str(path), False) from None


def _load_error(e: Exception, where: str, hub: bool) -> Exception:
    """A ModelLoadError for what transformers/peft/safetensors raised; other exceptions (bugs)
    are returned unchanged so they keep their traceback."""
    from safetensors import SafetensorError

    if isinstance(e, pickle.UnpicklingError):
        return ModelLoadError(
            f"{where}: a pickle weights file holds objects other than tensors, so it was refused "
            "even with --allow-pickle (it is read with torch.load(weights_only=True)). It is not "
            "plain weights and may be malicious: get safetensors weights from a source you trust.")
    if isinstance(e, SafetensorError):
        return ModelLoadError(f"{where}: a .safetensors weights file is damaged or incomplete "
                              f"({_first_line(e)}). Was a download or save interrupted? Re-save "
                              "or re-download the model.")
    if isinstance(e, ValueError) and "trust_remote_code" in str(e):
        return remote_code_error(Path(where), [])
    if hub and isinstance(e, OSError):
        return _hub_error(where, "model", e)
    if isinstance(e, (OSError, ValueError, RuntimeError, KeyError)):
        hint = " (pass --allow-pickle if it has only .bin weights and you trust it)" if hub else ""
        return ModelLoadError(f"Could not load model '{where}': {type(e).__name__}: "
                              f"{_first_line(e)}{hint}")
    return e


CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "max_sequence_length",
                "seq_length", "n_ctx")


def context_length(name_or_path: str | os.PathLike, trust_remote_code: bool = False) -> int | None:
    """The model's context length from its config (no weights loaded); None if unknown. A local
    directory read before answers from the memo (load_memo.py), without AutoConfig (and torch)."""
    try:
        source = model_source(name_or_path, "config")
        if isinstance(source, Path) and is_adapter_dir(source):
            source = model_source(adapter_base(source), "config")
    except Exception:  # unknown is fine here: loading the model itself reports the real problem
        return None
    if isinstance(source, Path):
        known = load_memo.recall(source, trust_remote_code)
        if "context" in known:
            return known["context"]
    context = _context_from_config(source, trust_remote_code)
    if isinstance(source, Path):
        load_memo.remember(source, trust_remote_code, context=context)
    return context


def _context_from_config(source: Path | str, trust_remote_code: bool) -> int | None:
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(str(source), trust_remote_code=bool(trust_remote_code))
        config = config.get_text_config()
    except Exception:  # unknown is fine here: loading the model itself reports the real problem
        return None
    for key in CONTEXT_KEYS:
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def fit_max_length(max_length: int, name_or_path: str | os.PathLike, say: Callable[[str], None],
                   trust_remote_code: bool = False) -> int:
    """--max-length, lowered (with a warning through `say`) to the model's context length."""
    context = context_length(name_or_path, trust_remote_code)
    if context is None or max_length <= context:
        return max_length
    from .config import DataOptions

    default = " (the default)" if max_length == DataOptions.max_length else ""
    say(f"--max-length {max_length}{default} > the model's context {context}; using {context}")
    return context


def parameter_count(name_or_path: str | os.PathLike) -> int | None:
    """Parameters in a model directory's (or a cached hub model's) safetensors files, read from
    their headers (no weights loaded); None when unknown (hub name not cached, pickle-only
    weights)."""
    from safetensors import safe_open

    path = local_model_dir(name_or_path)
    if path is None:  # a hub name: counted only when cached, never worth a download
        path = cached_snapshot(str(name_or_path))
    if path is None:
        return None
    total = 0
    for file in path.glob("*.safetensors"):
        try:
            with safe_open(str(file), framework="pt") as f:
                total += sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())  # noqa: SIM118 (safe_open is not a dict)
        except Exception:  # a damaged file: loading reports it properly
            return None
    return total or None


def make_shareable(path: str | os.PathLike) -> None:
    """Give a saved model directory normal permissions (dirs 0o755, files 0o644, less the umask):
    tempfile.mkdtemp makes 0700 and some writers 0600, which a serving container or another user
    could not read."""
    umask = os.umask(0)
    os.umask(umask)
    root = Path(path)
    for p in (root, *root.rglob("*")):
        if not p.is_symlink():
            p.chmod((0o755 if p.is_dir() else 0o644) & ~umask)
