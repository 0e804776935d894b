"""Errors a user can cause and fix. The CLI prints these without a traceback.

Every message says what is wrong, where (file, line, field when known) and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass


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


class DataError(InstructTuneError):
    """One or more problems in a data file, all reported at once."""

    def __init__(self, problems: list[Problem], hint: str = "", max_shown: int = 50):
        self.problems = problems
        shown = "\n".join(f"  {p}" for p in problems[:max_shown])
        more = f"\n  ... and {len(problems) - max_shown} more" if len(problems) > max_shown else ""
        hint = hint or "Fix these rows, or pass --skip-invalid to drop them and continue."
        noun = "problem" if len(problems) == 1 else "problems"
        super().__init__(f"{len(problems)} {noun} in the data:\n{shown}{more}\n{hint}")


class ConfigError(InstructTuneError):
    """Conflicting or invalid options."""


class ModelLoadError(InstructTuneError):
    """A model or tokenizer could not be loaded safely."""
