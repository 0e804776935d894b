"""`instruct-tune export MODEL --to OUT`: a plain transformers model directory (serve/export.py)."""

from __future__ import annotations

from pathlib import Path

from ..config import ExportConfig


def preflight(cfg: ExportConfig) -> None:
    """Check --to and claim it before anything loads (export() checks again, for API users)."""
    from ..serve.export import check_target

    check_target(Path(cfg.model), Path(cfg.to), cfg.overwrite)


def run(cfg: ExportConfig) -> int:
    from ..evaluate.generate import err
    from ..serve.export import export

    out = export(cfg.model, cfg.to, merge=cfg.merge, overwrite=cfg.overwrite, template=cfg.template,
                 trust_remote_code=cfg.trust_remote_code, allow_pickle=cfg.allow_pickle)
    err.print(f"exported to {out}: load it with AutoModelForCausalLM.from_pretrained('{out}') and "
              "prompt it with tokenizer.apply_chat_template(messages, add_generation_prompt=True).")
    return 0
