"""What every lever reads: the records plus views computed once (normalized fields, tasks, tokens).

Levers take an `AuditData` and return a `LeverReport`; anything two levers need is computed here,
lazily, so an audit never normalizes or tokenizes a field twice.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property

from ..data.records import Record
from ..errors import Problem
from .tasks import task_of
from .words import Tokens, Vocab, norm, words


def prompt_key(r: Record) -> tuple[str, ...]:
    """What a row asks, case- and space-insensitive: (instruction, input) for a single-turn row;
    every turn before the last reply for a longer chat, so two chats that merely open with the
    same "Hi!" are not "the same prompt" (for conflicts, duplicates and contamination)."""
    if len(r.messages) == 2:
        return norm(r.instruction), norm(r.input)
    return tuple(f"{m.role}: {norm(m.content)}\n{norm(m.input)}" for m in r.prompt_messages())


@dataclass
class TokenStats:
    """Per-row token counts from the real tokenizer and template (only with --model)."""

    lengths: list[int]  # tokens in each kept training example (template included)
    trained: list[int]  # trained (labelled) tokens in each kept example
    dropped: list[Problem]  # rows that would not fit --max-length
    max_length: int
    context: int | None = None  # the model's context length, when known: can --max-length grow?


@dataclass
class AuditData:
    records: list[Record]
    skipped: list[Problem] = field(default_factory=list)
    tokens: TokenStats | None = None
    vocab: Vocab = field(default_factory=Vocab)

    @property
    def n(self) -> int:
        return len(self.records)

    @cached_property
    def raw(self) -> tuple[list[str], list[str], list[str]]:
        """(instructions, inputs, outputs) as written (Record's properties walk the messages)."""
        rows = [(r.instruction, r.input, r.output) for r in self.records]
        return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]

    @cached_property
    def instructions(self) -> list[str]:
        """Normalized (case-folded, whitespace-collapsed) instructions; likewise inputs, outputs."""
        return [norm(t) for t in self.raw[0]]

    @cached_property
    def inputs(self) -> list[str]:
        return [norm(t) for t in self.raw[1]]

    @cached_property
    def outputs(self) -> list[str]:
        return [norm(t) for t in self.raw[2]]

    @cached_property
    def prompts(self) -> list[tuple[str, ...]]:
        """Each row's prompt key (see `prompt_key`), from the normalized fields already computed."""
        return [(a, b) if len(r.messages) == 2 else prompt_key(r)
                for r, a, b in zip(self.records, self.instructions, self.inputs, strict=True)]

    @cached_property
    def prompt_groups(self) -> dict[tuple[str, ...], list[int]]:
        """Prompt key -> row indices, in order."""
        g: dict[tuple[str, ...], list[int]] = defaultdict(list)
        for i, key in enumerate(self.prompts):
            g[key].append(i)
        return g

    @cached_property
    def instruction_groups(self) -> dict[str, list[int]]:
        g: dict[str, list[int]] = defaultdict(list)
        for i, s in enumerate(self.instructions):
            g[s].append(i)
        return g

    @cached_property
    def tasks(self) -> list[tuple[str, str]]:
        """(verb, object) per row; computed once per distinct instruction."""
        raw = self.raw[0]
        cache = {s: task_of(raw[idx[0]]) for s, idx in self.instruction_groups.items()}
        return [cache[s] for s in self.instructions]

    @cached_property
    def instruction_words(self) -> list[list[str]]:
        """Words of each distinct instruction, in `instruction_groups` order."""
        return [words(s) for s in self.instruction_groups]

    @cached_property
    def instruction_tokens(self) -> Tokens:
        """Word hashes of each distinct instruction, in `instruction_groups` order."""
        return Tokens.from_words(self.instruction_words, self.vocab)

    @cached_property
    def word_counts(self) -> list[tuple[int, int, int]]:
        """(instruction, input, output) word counts per row (whitespace words, like wc -w)."""
        ins, inp, out = self.raw
        return [(len(a.split()), len(b.split()), len(c.split()))
                for a, b, c in zip(ins, inp, out, strict=True)]
