"""A command's YAML file: read with its keys and values checked against the command's dataclass
(typos and other tools' option names fail loudly, with a suggestion), and written next to every
run as `config.yaml` so the run can be repeated with `--config`."""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path
from types import UnionType
from typing import Annotated, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from .config import COMMAND_CONFIGS
from .errors import ConfigError


def load_yaml(path: str | Path, cls: type, ignored: list[str] | None = None) -> dict:
    """Read a YAML config and check its keys against the dataclass, so typos fail loudly. Keys
    that belong to another command (a run's own config.yaml fed to `eval`) are left out and
    appended to `ignored`."""
    try:
        values = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"Config file not found: {path}") from None
    except OSError as e:  # a directory, no permission, ...
        raise ConfigError(f"Cannot read config file {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of option names to values")
    known = {f.name for f in fields(cls)}
    elsewhere = {f.name for c in COMMAND_CONFIGS for f in fields(c)} - known
    if ignored is not None:
        ignored += sorted(k for k in values if k in elsewhere)
    values = {k: v for k, v in values.items() if k not in elsewhere}
    unknown = sorted(set(values) - known)
    if unknown:
        lines = [f"  {k}: {_suggest(k, known)}" for k in unknown]
        raise ConfigError(f"{path}: unknown option{'s' if len(unknown) > 1 else ''}:\n" +
                          "\n".join(lines) + f"\nKnown options: {', '.join(sorted(known))}")
    data = values.get("data")  # [a.jsonl, b.jsonl] or {a.jsonl: 0.7, ...}: a spec (data/mix.py)
    if isinstance(data, list | dict):
        values["data"] = ",".join(f"{k}={v}" for k, v in data.items()) if isinstance(data, dict) \
            else ",".join(map(str, data))
    hints = get_type_hints(cls, include_extras=True)
    return {k: _coerce(v, hints[k], f"{path} [{k}]") for k, v in values.items()}


# Names other fine-tuning tools (transformers/TRL, Axolotl, LitGPT) use for our options.
OTHER_TOOLS_NAMES = {
    "learning_rate": "lr", "num_train_epochs": "epochs", "num_epochs": "epochs",
    "per_device_train_batch_size": "batch_size", "micro_batch_size": "batch_size",
    "gradient_accumulation_steps": "grad_accum", "model_name_or_path": "model",
    "base_model": "model", "output_dir": "out", "dataset": "data", "train_file": "data",
    "max_seq_length": "max_length", "sequence_len": "max_length", "lora_rank": "lora_r",
    "lr_scheduler_type": "schedule", "bf16": "precision", "sample_packing": "packing",
    "lora_target_modules": "lora_targets", "resume_from_checkpoint": "resume",
}


def _suggest(key: str, known: set[str]) -> str:
    """'did you mean lr?' for a misspelt key or another tool's name for one of our options."""
    from difflib import get_close_matches

    target = OTHER_TOOLS_NAMES.get(key)
    if target in known:
        return f"instruct-tune calls this {target}"
    close = get_close_matches(key, sorted(known), n=1, cutoff=0.7)
    return f"did you mean {close[0]}?" if close else "not an option of this command"


def _coerce(value, hint, where: str):
    """A YAML value as the option's type; tyro type-checks flags but not YAML defaults. YAML reads
    `1e-4` as a string (it wants `1.0e-4`), so numbers written as strings are converted."""
    if get_origin(hint) is Annotated:
        return _coerce(value, get_args(hint)[0], where)
    options = get_args(hint) if get_origin(hint) in (Union, UnionType) else (hint,)
    for h in options:
        if get_origin(h) is Literal and value in get_args(h) or h is type(None) and value is None:
            return value
        if h in (int, float) and not isinstance(value, bool):
            try:
                number = h(value)
            except (TypeError, ValueError):
                continue
            if h is float or number == float(value):  # int: no silent rounding of 2.5
                return number
        if h in (str, bool) and isinstance(value, h):
            return value
        if h is str and isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)  # max_time: 300
        if h is str and isinstance(value, dict):  # columns: {instruction: question}
            return ",".join(f"{k}={v}" for k, v in value.items())
        if get_origin(h) is tuple and isinstance(value, str):  # curate's data: a spec string
            return (value,)
    names = ["one of " + ", ".join(map(str, get_args(h))) if get_origin(h) is Literal else
             "null" if h is type(None) else getattr(h, "__name__", str(h)) for h in options]
    raise ConfigError(f"{where}: {value!r} is not a valid value; expected {' or '.join(names)}.")


def save_yaml(config, path: str | Path) -> None:
    """The resolved options, in field order: a file `--config` reads back."""
    Path(path).write_text(yaml.safe_dump(asdict(config), sort_keys=False))


__all__ = ["OTHER_TOOLS_NAMES", "load_yaml", "save_yaml"]
