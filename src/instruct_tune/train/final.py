"""DIR/final/: the trained model as plain transformers loads it, with what inference needs.

    final/model.safetensors (+ config.json)  full fine-tuning
    final/adapter_model.safetensors + adapter_config.json   LoRA (base path absolute if local)
    final/tokenizer files, chat_template = the training template (so apply_chat_template agrees)
    final/template.json                      the template object (instruct-tune reads this)
    final/generation_config.json             eos_token_id lists the stop token training taught

Written to DIR/.tmp-final and renamed, so final/ is either absent or complete.
"""

from __future__ import annotations

import os
import shutil
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
        gen = generation_config(core, tokenizer, stop_ids)
        gen.save_pretrained(str(tmp))
        template.save(tmp)
        with suppress(NotImplementedError):  # so apply_chat_template prompts as training did
            tokenizer.chat_template = chat_template_for(tokenizer, template)
        tokenizer.save_pretrained(str(tmp))
        make_shareable(tmp)  # readable by a serving container or another user
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    accelerator.wait_for_everyone()
    return final
