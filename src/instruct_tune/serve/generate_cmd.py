"""`instruct-tune generate --model DIR "instruction" [--input TEXT]`: answer one instruction,
streaming the response (and nothing else) to stdout."""

from __future__ import annotations

import sys

from ..data.records import Message
from ..errors import ConfigError
from ..evaluate.generate import Generator, check_sampling, err


def write_stdout(text: str) -> None:
    """Print a streamed piece at once (stdout is block-buffered when piped)."""
    sys.stdout.write(text)
    sys.stdout.flush()


def run(cfg) -> int:
    if not cfg.model:
        raise ConfigError("generate needs --model DIR (a trained run's final/ directory).")
    check_sampling(cfg.max_new_tokens, cfg.temperature, cfg.top_p, cfg.seed)
    instruction = sys.stdin.read() if cfg.instruction == "-" else cfg.instruction
    if not instruction.strip():
        raise ConfigError('generate needs an instruction: instruct-tune generate --model DIR "..." '
                          "(or '-' to read it from stdin).")
    gen = Generator.load(cfg.model, template=cfg.template, trust_remote_code=cfg.trust_remote_code,
                         allow_pickle=cfg.allow_pickle)
    prompt = gen.encode([Message("user", instruction, cfg.input)])
    out = gen.stream(prompt, write_stdout, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                     top_p=cfg.top_p)
    write_stdout("\n")
    if not out.stopped:
        err.print(f"[dim](no stop token within --max-new-tokens {cfg.max_new_tokens}; the output was "
                  "cut there)[/]")
    return 0
