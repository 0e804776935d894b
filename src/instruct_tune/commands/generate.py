"""`instruct-tune generate MODEL "instruction" [--input TEXT]` (or `--model MODEL`): answer one
instruction, streaming the response (and nothing else) to stdout."""

from __future__ import annotations

import sys

from ..config import GenerateConfig
from ..errors import ConfigError


def run(cfg: GenerateConfig) -> int:
    from ..data.records import Message
    from ..evaluate.generate import Generator, err, seed_sampler
    from ..serve.chat import write_stdout

    seed_sampler(cfg.seed)
    instruction = sys.stdin.read() if cfg.instruction == "-" else cfg.instruction
    if not instruction.strip():
        raise ConfigError('generate needs an instruction: instruct-tune generate MODEL "..." '
                          "(or '-' to read it from stdin).")
    gen = Generator.load(cfg.model, template=cfg.template, trust_remote_code=cfg.trust_remote_code,
                         allow_pickle=cfg.allow_pickle)
    prompt = gen.encode([Message("user", instruction, cfg.input)])
    out = gen.stream(prompt, write_stdout, max_new_tokens=cfg.max_new_tokens,
                     temperature=cfg.temperature, top_p=cfg.top_p)
    write_stdout("\n")
    if not out.stopped:
        err.print(f"[dim](no stop token within --max-new-tokens {cfg.max_new_tokens}; the output was "
                  "cut there)[/]")
    return 0
