"""`instruct-tune chat MODEL`: an interactive terminal chat (serve/chat.py holds the loop)."""

from __future__ import annotations

import contextlib
import sys

from ..config import ChatConfig


def run(cfg: ChatConfig) -> int:
    from ..evaluate.generate import Generator, seed_sampler
    from ..serve.chat import chat_loop, read_piped

    seed_sampler(cfg.seed)
    gen = Generator.load(cfg.model, template=cfg.template, trust_remote_code=cfg.trust_remote_code,
                         allow_pickle=cfg.allow_pickle)
    interactive = sys.stdin.isatty()
    if interactive:
        with contextlib.suppress(ImportError):  # line editing and history for input(); not on Windows
            import readline  # noqa: F401
    sampling = {"max_new_tokens": cfg.max_new_tokens, "temperature": cfg.temperature,
                "top_p": cfg.top_p}
    return chat_loop(gen, read=input if interactive else read_piped, system=cfg.system,
                     sampling=sampling, interactive=interactive)
