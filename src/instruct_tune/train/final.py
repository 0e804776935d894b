"""DIR/final/: the trained model as plain transformers loads it, with what inference needs.

    final/model.safetensors (+ config.json)  full fine-tuning
    final/adapter_model.safetensors + adapter_config.json   LoRA (base path absolute if local)
    final/tokenizer files, chat_template = the training template (so apply_chat_template agrees)
    final/template.json                      the template object (instruct-tune reads this)
    final/generation_config.json             eos_token_id lists the stop token training taught

Written to DIR/.tmp-final and renamed, so final/ is either absent or complete.

Every checkpoint DIR/checkpoints/step-N/ is a model directory too (`checkpoint_files`): the same
non-weight files (`write_model_files`) next to the weights accelerate saved, plus config.json (full
fine-tuning) or the adapter (LoRA), so generate/eval/export and plain transformers load it.
"""

from __future__ import annotations

import copy
import os
import shutil
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

from ..data.chat_template import chat_template_for
from ..data.templates import Template
from ..models import make_shareable
from .checkpoint import test_signal
from .lora import save_adapter


def generation_config(model, tokenizer, stop_ids: list[int]):
    """The model's generation config with every stop id (end-of-turn token and EOS) as eos."""
    from transformers import GenerationConfig

    gen = getattr(model, "generation_config", None) or GenerationConfig()
    gen = GenerationConfig.from_dict(gen.to_dict())
    old = gen.eos_token_id
    old = [] if old is None else [old] if isinstance(old, int) else list(old)
    gen.eos_token_id = list(dict.fromkeys([*stop_ids, *old]))
    gen.pad_token_id = tokenizer.pad_token_id
    if tokenizer.bos_token_id is not None:
        gen.bos_token_id = tokenizer.bos_token_id
    return gen


def save_final(accelerator, model, tokenizer, template: Template, stop_ids: list[int], out: Path,
               *, lora: bool, base: str, resized: bool = False) -> Path:
    """Write DIR/final atomically (main process writes; all processes take part in gathering
    sharded weights). `base`: the adapter's base model. `resized`: the embeddings grew for added
    tokens, so `base` no longer fits the adapter; the resized base goes to final/base/."""
    final, tmp = out / "final", out / ".tmp-final"
    state_dict = accelerator.get_state_dict(model)  # gathers FSDP/ZeRO-3 shards; collective
    inner = accelerator.unwrap_model(model)
    if accelerator.is_main_process:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        if lora:
            if resized:
                base = str((final / "base").resolve())
            # peft keeps the adapter part (LoRA on embeddings included). Full embedding copies
            # are never needed: we don't change them except through the adapter, and a resized
            # base already holds the grown ones. ("auto" would ask the hub whether the base's
            # vocabulary changed: a network request, and warnings, on every offline save.)
            save_adapter(inner, tmp, base, state_dict=state_dict, with_embeddings=False)
            core = inner.get_base_model()
            if resized:  # training is over: strip the adapter layers off and save the base
                core = inner.unload()
                core.save_pretrained(str(tmp / "base"), safe_serialization=True)
                tokenizer.save_pretrained(str(tmp / "base"))
        else:
            inner.save_pretrained(str(tmp), state_dict=state_dict, safe_serialization=True)
            core = inner
        test_signal("final")
        write_model_files(tmp, core, tokenizer, template, stop_ids)
        make_shareable(tmp)  # readable by a serving container or another user
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    accelerator.wait_for_everyone()
    return final


def write_model_files(path: Path, model, tokenizer, template: Template, stop_ids: list[int]) -> None:
    """The non-weight files of a trained model directory (final/ and every checkpoint): the
    generation config with every stop id, template.json, and the tokenizer whose chat_template
    renders the training prompt. `model`: the plain model (a LoRA model's base)."""
    generation_config(model, tokenizer, stop_ids).save_pretrained(str(path))
    template.save(path)
    before = tokenizer.chat_template
    with suppress(NotImplementedError):  # so apply_chat_template prompts as training did
        tokenizer.chat_template = chat_template_for(tokenizer, template)
    try:
        tokenizer.save_pretrained(str(path))
    finally:  # the training tokenizer stays as it was (a checkpoint is written mid-run)
        tokenizer.chat_template = before


def checkpoint_files(accelerator, model, tokenizer, template: Template, stop_ids: list[int],
                     out: Path, *, lora: bool, base: str, resized: bool = False
                     ) -> Callable[[Path], None] | None:
    """A function that turns a checkpoint directory (after accelerate wrote its weights; main
    process only) into a model directory, or None when the weights are sharded (FSDP, DeepSpeed)
    and no plain model directory can be made from them without gathering the whole model.

    Full fine-tuning: accelerate's model.safetensors has the names save_pretrained writes (tied
    copies dropped the same way), so config.json is all it lacks. LoRA: the adapter (KBs to MBs)
    is written too; accelerate's file holds only trainable weights in peft's internal naming. With
    resized embeddings the adapter's base is final/base, which exists once training finished."""
    if accelerator.distributed_type.value in ("FSDP", "DEEPSPEED", "MEGATRON_LM"):
        return None
    adapter_base = str((out / "final" / "base").resolve()) if resized else base

    def write(path: Path) -> None:
        inner = accelerator.unwrap_model(model)
        if lora:
            save_adapter(inner, path, adapter_base, with_embeddings=False)
            core = inner.get_base_model()
        else:
            core = inner
            if not _weights_match(path / "model.safetensors", core):
                return  # a config.json would load random weights in place of missing ones
            config = copy.deepcopy(core.config)
            config.architectures = [type(core).__name__]
            config.use_cache = True  # off during training for gradient checkpointing only
            config.save_pretrained(str(path))
        write_model_files(path, core, tokenizer, template, stop_ids)

    return write


def _weights_match(file: Path, model) -> bool:
    """Whether `file` holds every weight of `model` under the names from_pretrained expects;
    only tied copies (e.g. lm_head = embeddings, stored once) may be absent."""
    from safetensors import safe_open

    if not file.is_file():
        return False
    with safe_open(str(file), "pt") as f:
        saved = set(f.keys())
    expected = model.state_dict()
    if not saved <= expected.keys():
        return False
    stored = {expected[k].untyped_storage().data_ptr() for k in saved}
    return all(expected[k].untyped_storage().data_ptr() in stored for k in expected.keys() - saved)
