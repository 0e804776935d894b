"""The tokenizer side of a command that reads data for a model (inspect, audit, curate): the
model's tokenizer, --max-length clamped to its context, and the template (--template, else the
one saved with the model, else alpaca). One place, so every command reads a model alike."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable


def tokenizer_for(cfg, warn: Callable[[str], None]):
    """(tokenizer, template, cfg with --max-length fitted to the model's context)."""
    from ..data.templates import default_template, get_template
    from ..models import fit_max_length, load_tokenizer

    tokenizer = load_tokenizer(cfg.model, trust_remote_code=cfg.trust_remote_code)
    cfg = dataclasses.replace(cfg, max_length=fit_max_length(
        cfg.max_length, cfg.model, lambda m: warn(f"[yellow]warning:[/] {m}"),
        cfg.trust_remote_code))
    return tokenizer, get_template(cfg.template or default_template(cfg.model), tokenizer), cfg
