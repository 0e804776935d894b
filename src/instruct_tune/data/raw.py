"""The rows behind records, as they were read, so a subset of a data set (curate's output) can be
written back with the file's own fields, column names and key order, whatever its record format.

Files are read again with the same readers, so line numbers agree with `Record.source`. A source
with no file to re-read (a `datasets` name or saved dataset) is rebuilt from its records in the
format it was loaded as, with their extra fields.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .readers import read_file
from .records import Record
from .validate import FORMATS


def original_rows(records: Sequence[Record], fmt: str = "auto") -> list[dict]:
    """The row each record was read from, in the order of `records` (a record may repeat).
    Rows with no file to copy from are rebuilt in `fmt`, or as chat messages where some record
    does not fit `fmt` (or fmt is auto/mixed and some record is a longer chat), so one output
    file never mixes formats."""
    wanted: dict[str, set[int]] = {}
    for r in records:
        wanted.setdefault(r.source.path, set()).add(r.source.line)
    found: dict[tuple[str, int], dict] = {}
    for path, lines in wanted.items():
        if not Path(path).is_file():
            continue
        for line, row in read_file(Path(path), path):
            if line in lines and isinstance(row, dict):
                found[(path, line)] = row
    missing = [r for r in records if (r.source.path, r.source.line) not in found]
    if fmt not in FORMATS:
        fmt = "alpaca"
    if not all(_fits(r, fmt) for r in missing):
        fmt = "chat"
    return [found.get((r.source.path, r.source.line)) or rebuild(r, fmt) for r in records]


def _fits(r: Record, fmt: str) -> bool:
    single = len(r.messages) == 2
    return fmt == "chat" or single and (fmt == "alpaca" or not r.input)


def rebuild(r: Record, fmt: str = "chat") -> dict:
    """A row in `fmt` (alpaca, prompt_completion or chat; chat where the record does not fit
    it) that loads back as the same record, extra fields (`task`, ...) included."""
    if fmt == "alpaca" and _fits(r, fmt):
        row = {"instruction": r.instruction, "input": r.input, "output": r.output}
    elif fmt == "prompt_completion" and _fits(r, fmt):
        row = {"prompt": r.instruction, "completion": r.output}
    else:
        row = {"messages": [{"role": m.role, "content": _content(m)} for m in r.messages]}
    return row | {k: v for k, v in r.meta.items() if k not in row}


def _content(m) -> str:
    # A chat has no input block: fold an alpaca input into the user turn, as templates do.
    return f"{m.content}\n\n{m.input}" if m.input else m.content
