"""`instruct-tune chat DIR`: an interactive terminal chat that streams the model's replies.

Chat templates (chatml, model, ...) keep the conversation history; alpaca has no notion of turns,
so each message is answered on its own (the banner says so). Ctrl-D or Ctrl-C at the prompt quits;
Ctrl-C while the model is answering stops that answer.

Commands: a line that is a single word starting with '/' (a letter, then letters, digits, '-' or
'_'; e.g. /reset, /hlep, /quit2) is a command and never reaches the model: a known one runs, an
unknown one is named with the list of known ones. Any other line, including one that merely starts
with '/' ("/usr/bin is a directory", "/etc?"), is a message for the model.

Piped input (stdin not a terminal): each non-empty line is one message; stdout holds only the
answers, each followed by a blank line, and notes go to stderr. The end of the input exits with 0:
    printf 'Say yes.\\nName a color.\\n' | instruct-tune chat DIR
"""

from __future__ import annotations

import difflib
import re
import sys
from collections.abc import Callable

from ..data.records import Message
from ..errors import ConfigError
from ..evaluate.generate import Generator

COMMANDS = ("/reset", "/exit", "/quit", "/help")
HELP = ("Commands: /reset clears the history, /exit or /quit quits (or Ctrl-D), /help shows this. "
        "Any line that is not a single /word goes to the model.")
# A command attempt: one '/'-word, no spaces or further '/' (those are text, e.g. paths).
COMMAND_RE = re.compile(r"/[A-Za-z][\w-]*")


def write_stdout(text: str) -> None:
    """Print a streamed piece at once (stdout is block-buffered when piped)."""
    sys.stdout.write(text)
    sys.stdout.flush()


def write_stderr(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()


def read_piped(prompt: str) -> str:
    """`input` for piped stdin: no prompt on stdout (it would mix with the answers)."""
    line = sys.stdin.readline()
    if not line:
        raise EOFError
    return line.rstrip("\r\n")


def unknown_command(text: str) -> str:
    close = difflib.get_close_matches(text.lower(), COMMANDS, n=1)
    hint = f" Did you mean {close[0]}?" if close else ""
    return (f"(unknown command {text}.{hint} Known: {', '.join(COMMANDS)}. A line that is a single "
            "/word is a command; add any other word to send it to the model.)\n")


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
              sampling: dict | None = None, interactive: bool = True,
              note: Callable[[str], None] | None = None) -> int:
    """Read a message, stream the answer, repeat. `read` raises EOFError/KeyboardInterrupt to quit.

    Answers go to `write`. Interactive: a banner, the '>>> ' prompt, notes to `write`. Not
    interactive (piped): no banner or prompt, notes to `note` (stderr), answers end in a blank line.
    """
    write = write or write_stdout
    note = write if interactive else (note or write_stderr)
    sampling = sampling or {}
    multi = is_multi_turn(gen.template)
    head: list[Message] = []
    if system:
        if supports(gen.template, [Message("system", "\x01s"), Message("user", "\x01u")]):
            head = [Message("system", system)]
        else:
            note(f"(the {gen.template.name} template has no system message; --system is ignored)\n")
    if interactive:
        turns = ("multi-turn: the model sees the conversation so far" if multi else
                 f"single-turn: the {gen.template.name} template has no turns, so each message is "
                 "answered on its own")
        write(f"Chatting with {gen.name} (template {gen.template.name}, {turns}).\n{HELP}\n")
    end = "\n" if interactive else "\n\n"  # piped: a blank line between answers
    history: list[Message] = []
    while True:
        try:
            line = read(">>> " if interactive else "")
        except (EOFError, KeyboardInterrupt):
            if interactive:
                write("\n")
            return 0
        text = line.strip()
        if not text:
            continue
        if COMMAND_RE.fullmatch(text):
            command = text.lower()
            if command in ("/exit", "/quit"):
                return 0
            if command == "/reset":
                history.clear()
                note("(history cleared)\n")
            elif command == "/help":
                note(HELP + "\n")
            else:
                note(unknown_command(text))
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
            note(f"(dropped {(len(history) - len(past)) // 2} old exchange(s) to fit the context)\n")
            history[:] = past
        try:
            out = gen.stream(prompt, write, **sampling)
        except KeyboardInterrupt:
            if not interactive:
                write(end)  # end the partial answer so the next one starts on its own
            note("\n(interrupted)\n" if interactive else "(interrupted)\n")
            continue
        except ConfigError as e:  # e.g. a message longer than the context: say so, keep chatting
            note(f"({e})\n")
            continue
        if interactive:
            write("\n" if out.stopped else "\n(no stop token within --max-new-tokens)\n")
        else:
            write(end)
            if not out.stopped:
                note("(no stop token within --max-new-tokens; the answer was cut there)\n")
        if multi:
            history += [user, Message("assistant", out.text)]
