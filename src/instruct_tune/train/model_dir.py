"""The model-directory format, written in one place: what final/, every checkpoints/step-N/ and
an export hold besides their weights, and how a whole directory is put in place.

    generation_config.json   eos_token_id lists every stop id (the end-of-turn token training
                             taught, EOS, and the model's own), pad and bos from the tokenizer
    template.json            the template object (instruct-tune reads this)
    adapter_config.json      (LoRA, written by peft) target_modules sorted: the same on every run
    tokenizer files          chat_template = the training template (`training_chat_template`),
                             so apply_chat_template prompts with the ids training used

`write_model_files` writes those (checkpoints: next to the weights accelerate saved).
`write_model_dir` writes a whole directory staged: weights and files go to a temporary sibling,
made readable by others, then moved into place, so the directory is absent or complete.
Used by train/final.py (final/, checkpoints) and serve/export.py.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

from ..data.chat_template import chat_template_for, check_chat_template
from ..data.templates import Template
from ..models import make_shareable


def generation_config(model, tokenizer, stop_ids: list[int]):
    """The model's generation config with every stop id (end-of-turn token and EOS) first among
    its eos ids, so plain `generate()` stops where instruct-tune does."""
    from transformers import GenerationConfig

    gen = getattr(model, "generation_config", None) or GenerationConfig()
    gen = GenerationConfig.from_dict(gen.to_dict())  # a copy: the model's own stays as it was
    old = gen.eos_token_id
    old = [] if old is None else [old] if isinstance(old, int) else list(old)
    gen.eos_token_id = list(dict.fromkeys([*stop_ids, *old]))
    gen.pad_token_id = tokenizer.pad_token_id
    if tokenizer.bos_token_id is not None:
        gen.bos_token_id = tokenizer.bos_token_id
    return gen


def training_chat_template(tokenizer, template: Template) -> str | None:
    """The chat_template saved with the tokenizer: the training template's Jinja, led by what
    makes apply_chat_template's ids equal the training prompt ids. None when the template has
    no Jinja form (the tokenizer's own chat_template is kept then)."""
    with suppress(NotImplementedError):
        return chat_template_for(tokenizer, template)
    return None


def chat_template_problems(tokenizer, template: Template) -> list[str]:
    """Where the saved chat_template would prompt differently from training (empty: nowhere)."""
    before = tokenizer.chat_template
    chat = training_chat_template(tokenizer, template)
    if chat is not None:
        tokenizer.chat_template = chat
    try:
        return check_chat_template(tokenizer, template)
    finally:
        tokenizer.chat_template = before


def write_model_files(path: Path, model, tokenizer, template: Template,
                      stop_ids: list[int]) -> None:
    """The non-weight files of a model directory into `path`. `model`: the plain model (a LoRA
    model's base), whose generation config the stop ids are added to."""
    generation_config(model, tokenizer, stop_ids).save_pretrained(str(path))
    template.save(path)
    sort_adapter_targets(path)
    before = tokenizer.chat_template
    chat = training_chat_template(tokenizer, template)
    if chat is not None:
        tokenizer.chat_template = chat
    try:
        tokenizer.save_pretrained(str(path))
    finally:  # the caller's tokenizer stays as it was (a checkpoint is written mid-run)
        tokenizer.chat_template = before


def sort_adapter_targets(path: Path) -> None:
    """A LoRA adapter_config.json's target_modules in sorted order: peft keeps them as a set, so
    the saved list followed each process's string-hash seed and the same adapter was written
    differently by training and by export."""
    config = path / "adapter_config.json"
    if not config.is_file():
        return
    data = json.loads(config.read_text())
    if isinstance(data.get("target_modules"), list):
        data["target_modules"] = sorted(data["target_modules"])
        config.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def replace_dir(staged: Path, dest: Path) -> None:
    """Put a staged directory in place of `dest` (whatever was there goes)."""
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(staged, dest)


def write_model_dir(dest: Path, weights: Callable[[Path], None], model, tokenizer,
                    template: Template, stop_ids: list[int], *, stage: Path | None = None,
                    install: Callable[[Path, Path], None] = replace_dir) -> Path:
    """Write a complete model directory at `dest`: `weights(tmp)` saves the weights (and config
    or adapter), then `write_model_files`, into a staging directory that `install(tmp, dest)`
    moves into place once everything is written and readable by others.

    `stage`: the staging directory (emptied first: a leftover of a killed run); None makes a
    fresh hidden sibling of `dest`. `install`: `replace_dir` unless the caller must keep `dest`
    itself (export moves entries into its claimed --to, whose lock must stay)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if stage is None:
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    else:
        tmp = stage
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    try:
        weights(tmp)
        write_model_files(tmp, model, tokenizer, template, stop_ids)
        make_shareable(tmp)  # mkdtemp makes 0700: a serving container or another user could not read it
        install(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest
