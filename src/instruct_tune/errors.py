"""Errors a user can cause and fix. The CLI prints these without a traceback.

Every message says what is wrong, where (file, line, field when known) and what to do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Per-row advice to pass --skip-invalid, cut where it is said once for all rows instead.
_SKIP_ADVICE = re.compile(r",? or pass --skip-invalid[^;]*|,? where --skip-invalid drops bad lines")


class InstructTuneError(Exception):
    """Base class for problems the user can fix (bad data, bad flags, missing files)."""

    exit_code = 2


@dataclass(frozen=True)
class Problem:
    """One problem found in the input data, pointing back at its source."""

    path: str
    line: int | None  # 1-based line (JSONL/JSON array element) or row (CSV/Parquet); None if unknown
    field: str | None
    message: str

    def __str__(self) -> str:
        where = self.path
        if self.line is not None:
            where += f":{self.line}"
        if self.field:
            where += f" [{self.field}]"
        return f"{where}: {self.message}"


def strip_skip_advice(text: str) -> str:
    """`text` without its 'or pass --skip-invalid ...' advice."""
    return _SKIP_ADVICE.sub("", text)


def split_advice(message: str) -> tuple[str, str]:
    """'what (detail); what to do' -> ('what (detail)', 'what to do'): problem messages put their
    advice after the first '; ' outside parentheses ('' when there is none)."""
    depth = 0
    for i, ch in enumerate(message):
        depth += (ch == "(") - (ch == ")")
        if depth == 0 and message.startswith("; ", i):
            return message[:i], message[i + 2:]
    return message, ""


class DataError(InstructTuneError):
    """One or more problems in a data file, all reported at once. Each distinct advice is said
    once: on the first row that needs it, and --skip-invalid only in the closing hint."""

    def __init__(self, problems: list[Problem], hint: str = "", max_shown: int = 50):
        self.problems = problems
        hint = hint or "Fix these rows, or pass --skip-invalid to drop them and continue."
        lines, said = [], set()
        for p in problems[:max_shown]:
            what, advice = split_advice(p.message)
            if "--skip-invalid" in hint:
                advice = strip_skip_advice(advice)
            if advice and advice not in said:
                said.add(advice)
                what += f"; {advice}"
            lines.append(f"  {Problem(p.path, p.line, p.field, what)}")
        more = f"\n  ... and {len(problems) - max_shown} more" if len(problems) > max_shown else ""
        noun = "problem" if len(problems) == 1 else "problems"
        super().__init__(f"{len(problems)} {noun} in the data:\n" + "\n".join(lines) +
                         f"{more}\n{hint}")


class ConfigError(InstructTuneError):
    """Conflicting or invalid options."""


class ModelLoadError(InstructTuneError):
    """A model or tokenizer could not be loaded safely."""
