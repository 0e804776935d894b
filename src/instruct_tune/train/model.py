"""Load models and tokenizers safely: safetensors only and no remote code, unless the user opts in.

A directory holding a LoRA adapter (adapter_config.json) loads as base model + adapter.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..errors import ModelLoadError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def _check_local_weights(path: Path, allow_pickle: bool) -> None:
    files = [p.name for p in path.iterdir()] if path.is_dir() else []
    has_safe = any(f.endswith(".safetensors") for f in files)
    pickled = [f for f in files if f.endswith(PICKLE_SUFFIXES) and f != "training_args.bin"]
    if not has_safe and pickled and not allow_pickle:
        raise ModelLoadError(
            f"{path} has only pickle-based weights ({', '.join(sorted(pickled)[:3])}). Loading a pickle "
            "can run arbitrary code. Convert them to safetensors, or pass --allow-pickle if you "
            "trust the source.")


def is_adapter_dir(name_or_path: str | os.PathLike) -> bool:
    return (Path(name_or_path) / "adapter_config.json").is_file()


def load_tokenizer(name_or_path: str | os.PathLike, trust_remote_code: bool = False):
    """Load a tokenizer; a pad token is set to EOS when missing (labels are masked by position,
    so EOS stays trained even when pad == eos)."""
    from transformers import AutoTokenizer

    path = Path(name_or_path)
    if path.exists() and not path.is_dir():
        raise ModelLoadError(f"{path} is a file; --model expects a model directory or hub name.")
    try:
        tok = AutoTokenizer.from_pretrained(str(name_or_path), trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        if path.is_dir():
            raise ModelLoadError(
                f"{path} has no loadable tokenizer (tokenizer.json / tokenizer_config.json). "
                f"Save the tokenizer next to the weights with tokenizer.save_pretrained('{path}'). "
                f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
        raise ModelLoadError(f"Could not load tokenizer '{name_or_path}': {e}") from None
    if tok.eos_token_id is None:
        raise ModelLoadError(
            f"The tokenizer of '{name_or_path}' has no EOS token, so a tuned model could never learn "
            "to stop. Set one (tokenizer.eos_token = '...'; tokenizer.save_pretrained(...)).")
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(name_or_path: str | os.PathLike, *, dtype: torch.dtype = torch.float32,
               trust_remote_code: bool = False, allow_pickle: bool = False):
    """Load a causal LM (or base + LoRA adapter) for training or inference."""
    from transformers import AutoModelForCausalLM

    path = Path(name_or_path)
    if path.is_dir() and is_adapter_dir(path):
        from peft import PeftModel

        base = json.loads((path / "adapter_config.json").read_text())["base_model_name_or_path"]
        model = load_model(base, dtype=dtype, trust_remote_code=trust_remote_code,
                           allow_pickle=allow_pickle)
        return PeftModel.from_pretrained(model, str(path))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{path} is not a model directory (no config.json).")
        _check_local_weights(path, allow_pickle)
    try:
        return AutoModelForCausalLM.from_pretrained(
            str(name_or_path), dtype=dtype, trust_remote_code=trust_remote_code,
            use_safetensors=None if allow_pickle else True)
    except OSError as e:
        raise ModelLoadError(f"Could not load model '{name_or_path}': {str(e).splitlines()[0]}") from None
    except ValueError as e:
        if "trust_remote_code" in str(e):
            raise ModelLoadError(f"'{name_or_path}' needs its own code to load. Pass "
                                 "--trust-remote-code only if you trust it.") from None
        raise ModelLoadError(f"Could not load model '{name_or_path}': {e}") from None
