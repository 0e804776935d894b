"""DIR/final/: the trained model as plain transformers loads it, with what inference needs.

    final/model.safetensors (+ config.json)  full fine-tuning
    final/adapter_model.safetensors + adapter_config.json   LoRA (base path absolute if local)
    final/tokenizer files, chat_template = the training template (so apply_chat_template agrees)
    final/template.json                      the template object (instruct-tune reads this)
    final/generation_config.json             eos_token_id lists the stop token training taught

Written to DIR/.tmp-final and renamed, so final/ is either absent or complete. The format (all
but the weights) and the staged write are model_dir.py's, which export uses too.

Every checkpoint DIR/checkpoints/step-N/ is a model directory too (`checkpoint_files`): the same
non-weight files (model_dir.write_model_files) next to the weights accelerate saved, plus
config.json (full fine-tuning) or the adapter (LoRA), so generate/eval/export and plain
transformers load it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

from ..data.templates import Template
from . import model_dir
from .checkpoint import test_signal
from .lora import save_adapter


def save_final(accelerator, model, tokenizer, template: Template, stop_ids: list[int], out: Path,
               *, lora: bool, base: str, resized: bool = False) -> Path:
    """Write DIR/final atomically (main process writes; all processes take part in gathering
    sharded weights). `base`: the adapter's base model. `resized`: the embeddings grew for added
    tokens, so `base` no longer fits the adapter; the resized base goes to final/base/."""
    final = out / "final"
    state_dict = accelerator.get_state_dict(model)  # gathers FSDP/ZeRO-3 shards; collective
    inner = accelerator.unwrap_model(model)
    if accelerator.is_main_process:
        core = inner.get_base_model() if lora else inner  # its generation config is saved
        if lora and resized:
            base = str((final / "base").resolve())

        def weights(tmp: Path) -> None:
            if lora:
                # peft keeps the adapter part (LoRA on embeddings included). Full embedding
                # copies are never needed: we don't change them except through the adapter,
                # and a resized base already holds the grown ones. ("auto" would ask the hub
                # whether the base's vocabulary changed: a network request, and warnings, on
                # every offline save.)
                save_adapter(inner, tmp, base, state_dict=state_dict, with_embeddings=False)
                if resized:  # training is over: strip the adapter layers off, save the base
                    inner.unload().save_pretrained(str(tmp / "base"), safe_serialization=True)
                    tokenizer.save_pretrained(str(tmp / "base"))
            else:
                inner.save_pretrained(str(tmp), state_dict=state_dict, safe_serialization=True)
            test_signal("final")

        model_dir.write_model_dir(final, weights, core, tokenizer, template, stop_ids,
                                  stage=out / ".tmp-final")
    accelerator.wait_for_everyone()
    return final


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
        model_dir.write_model_files(path, core, tokenizer, template, stop_ids)

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
