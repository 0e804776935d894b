"""The core record types every command shares: one validated row, whatever its input format.

A `Record` is a conversation (list of `Message`) plus where it came from, so every later message
(validation, truncation, audit findings) can point back to file and line. Alpaca rows become one
user message (with the optional `input` kept separate, because the alpaca template renders it in its
own block) and one assistant message; prompt/completion rows become user + assistant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Role = Literal["system", "user", "assistant"]
ROLES: tuple[str, ...] = ("system", "user", "assistant")


@dataclass(frozen=True)
class Source:
    """Where a record came from: file path and 1-based line (JSONL/JSON) or row (CSV/Parquet)."""

    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True)
class Message:
    role: Role
    content: str
    input: str = ""  # alpaca's optional "input" block; only on user messages from alpaca rows


@dataclass(frozen=True)
class Record:
    """One training/eval example as a conversation. The last assistant message is the target;
    in multi-turn chats every assistant message is trained."""

    messages: tuple[Message, ...]
    source: Source
    meta: dict = field(default_factory=dict, compare=False, hash=False)  # e.g. {"task": "..."}

    @property
    def instruction(self) -> str:
        """The first user message (alpaca `instruction`)."""
        return next((m.content for m in self.messages if m.role == "user"), "")

    @property
    def input(self) -> str:
        return next((m.input for m in self.messages if m.role == "user"), "")

    @property
    def output(self) -> str:
        """The last assistant message (alpaca `output`)."""
        return next((m.content for m in reversed(self.messages) if m.role == "assistant"), "")

    @classmethod
    def alpaca(cls, instruction: str, output: str, input: str = "", source: Source | None = None,
               **meta) -> Record:
        """Convenience constructor, handy in notebooks and tests."""
        msgs = (Message("user", instruction, input), Message("assistant", output))
        return cls(msgs, source or Source("<memory>", 0), dict(meta))

    def prompt_messages(self) -> tuple[Message, ...]:
        """Everything before the last assistant message: what a model is prompted with at eval."""
        last = max(i for i, m in enumerate(self.messages) if m.role == "assistant")
        return self.messages[:last]
