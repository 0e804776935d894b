"""LoRA through peft: which layers get adapters, and saving an adapter that plain transformers loads.

`AutoModelForCausalLM.from_pretrained(final/)` works on an adapter directory through transformers'
peft integration: it reads adapter_config.json, loads `base_model_name_or_path`, then the adapter.
So that path must stay loadable: for a local base we write its absolute path. When the template
added tokens, the base's embedding matrix is too small for the adapter; we then save the resized
base once (DIR/base/) and point the adapter at it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model

from ..config import TrainConfig
from ..errors import ConfigError


def lora_targets(spec: str) -> str | list[str]:
    """'all-linear' (every linear layer except the output head) or a comma-separated name list."""
    spec = spec.strip()
    if spec in ("all-linear", "all_linear", ""):
        return "all-linear"
    return [s.strip() for s in spec.split(",") if s.strip()]


def apply_lora(model, cfg: TrainConfig, new_token_ids: list[int] = ()) -> PeftModel:
    """Wrap `model` with a LoRA adapter. Rows of tokens the template added are trained too
    (peft trainable tokens), else the model could never read or write them."""
    targets = lora_targets(cfg.lora_targets)
    if isinstance(targets, list):
        _check_targets(model, targets)
    token_rows = None
    if new_token_ids:
        names = {"embed": _module_name(model, model.get_input_embeddings())}
        out = model.get_output_embeddings()
        if out is not None and out.weight is not model.get_input_embeddings().weight:
            names["head"] = _module_name(model, out)
        token_rows = {name: sorted(new_token_ids) for name in names.values()}
    config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                        target_modules=targets, task_type="CAUSAL_LM",
                        trainable_token_indices=token_rows)
    try:
        return get_peft_model(model, config)
    except ValueError as e:
        raise ConfigError(f"--lora-targets {cfg.lora_targets!r}: {e}") from None


def _check_targets(model, targets: list[str]) -> None:
    """Every name must match a layer: peft silently skips a misspelt one (v_prj) when another
    name matches, which trains fewer layers than asked for."""
    names = [n for n, m in model.named_modules()  # layers with a weight matrix: what LoRA adapts
             if n and getattr(getattr(m, "weight", None), "ndim", 0) == 2]
    missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        leaves = sorted({n.rsplit(".", 1)[-1] for n in names})
        raise ConfigError(f"--lora-targets: {', '.join(map(repr, missing))} matches no layer of "
                          f"this model. Its layer names: {', '.join(leaves)} (or 'all-linear').")


def _module_name(model, module: torch.nn.Module) -> str:
    for name, m in model.named_modules():
        if m is module:
            return name.rsplit(".", 1)[-1]
    raise ConfigError("could not find the embedding layer to train the added tokens")


def save_adapter(model: PeftModel, path: Path, base: str, state_dict: dict | None = None,
                 with_embeddings: bool = False) -> None:
    """Save the adapter (safetensors) with base_model_name_or_path = `base` (absolute if local)."""
    local = Path(base)
    model.peft_config["default"].base_model_name_or_path = (
        str(local.resolve()) if local.exists() else base)
    model.save_pretrained(str(path), state_dict=state_dict, safe_serialization=True,
                          save_embedding_layers=with_embeddings)
