"""`instruct-tune chat DIR`: an interactive terminal chat that streams the model's replies.

Chat templates (chatml, model, ...) keep the conversation history; alpaca has no notion of turns,
so each message is answered on its own (the banner says so). Ctrl-D or Ctrl-C at the prompt quits;
Ctrl-C while the model is answering stops that answer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from ..data.records import Message
from ..errors import ConfigError
from ..evaluate.generate import Generator, check_sampling
from .generate_cmd import write_stdout

HELP = "Commands: /reset clears the history, /exit quits (or Ctrl-D)."


def supports(template, messages: list[Message]) -> bool:
    """Whether the template renders every message of `messages` (probed with sentinel texts)."""
    try:
        text = template.render_prompt(messages)
    except Exception:  # alpaca-like templates may refuse several turns or a system message
        return False
    return all(m.content in text for m in messages)


def is_multi_turn(template) -> bool:
    """Templates whose turns end in the tokenizer's EOS (alpaca, raw) answer each message alone:
    a history would put EOS mid-prompt, the token the model learned to stop at."""
    if getattr(template, "kind", None) == "format" and template.stop is None:
        return False
    return supports(template, [Message("user", "\x01u1"), Message("assistant", "\x01a1"),
                               Message("user", "\x01u2")])


def chat_loop(gen: Generator, *, read: Callable[[str], str] = input,
              write: Callable[[str], None] | None = None, system: str | None = None,
              sampling: dict | None = None) -> int:
    """Read a message, stream the answer, repeat. `read` raises EOFError/KeyboardInterrupt to quit."""
    write = write or write_stdout
    sampling = sampling or {}
    multi = is_multi_turn(gen.template)
    head: list[Message] = []
    if system:
        if supports(gen.template, [Message("system", "\x01s"), Message("user", "\x01u")]):
            head = [Message("system", system)]
        else:
            write(f"(the {gen.template.name} template has no system message; --system is ignored)\n")
    turns = ("multi-turn: the model sees the conversation so far" if multi else
             f"single-turn: the {gen.template.name} template has no turns, so each message is "
             "answered on its own")
    write(f"Chatting with {gen.name} (template {gen.template.name}, {turns}).\n{HELP}\n")
    history: list[Message] = []
    while True:
        try:
            line = read(">>> ")
        except (EOFError, KeyboardInterrupt):
            write("\n")
            return 0
        text = line.strip()
        if not text:
            continue
        if text in ("/exit", "/quit"):
            return 0
        if text == "/reset":
            history.clear()
            write("(history cleared)\n")
            continue
        user = Message("user", text)
        past = list(history) if multi else []
        prompt = gen.encode(head + past + [user])
        # Forget the oldest exchanges rather than fail when the history outgrows the context.
        room = sampling.get("max_new_tokens", 256)
        while gen.context is not None and len(prompt) + room > gen.context and past:
            past = past[2:]
            prompt = gen.encode(head + past + [user])
        if multi and len(past) < len(history):
            write(f"(dropped {(len(history) - len(past)) // 2} old exchange(s) to fit the context)\n")
            history[:] = past
        try:
            out = gen.stream(prompt, write, **sampling)
        except KeyboardInterrupt:
            write("\n(interrupted)\n")
            continue
        except ConfigError as e:  # e.g. a message longer than the context: say so, keep chatting
            write(f"({e})\n")
            continue
        write("\n" if out.stopped else "\n(no stop token within --max-new-tokens)\n")
        if multi:
            history += [user, Message("assistant", out.text)]


def run(cfg) -> int:
    if not cfg.model:
        raise ConfigError("chat needs a model directory: instruct-tune chat DIR")
    check_sampling(cfg.max_new_tokens, cfg.temperature, cfg.top_p)
    gen = Generator.load(cfg.model, template=cfg.template, trust_remote_code=cfg.trust_remote_code,
                         allow_pickle=cfg.allow_pickle)
    with contextlib.suppress(ImportError):  # line editing and history for input(); not on Windows
        import readline  # noqa: F401
    sampling = {"max_new_tokens": cfg.max_new_tokens, "temperature": cfg.temperature,
                "top_p": cfg.top_p}
    return chat_loop(gen, system=cfg.system, sampling=sampling)
