"""Preference pairs: a prompt with a chosen and a rejected answer, loaded and validated like SFT rows.

Formats, detected from the columns (after --columns mapping):
- standard:       {"prompt": str, "chosen": str, "rejected": str}
- alpaca:         {"instruction", "input"?, "chosen", "rejected"}
- conversational: "prompt" a list of messages ending on a user turn; each answer a string, one
                  assistant message, or a list ending with one (after a copy of the prompt's
                  messages, as UltraFeedback writes them)
- implicit:       only "chosen" and "rejected", both whole conversations or both texts; what they
                  share before the answer is the prompt (see `split_text_prompt` for texts)
Files, directories and `datasets` names are read exactly as for SFT data (load.open_source); every
row is checked in full, so one DataError lists every problem as `file:line [field]: what; what to do`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, Problem
from .load import open_source, read_rows
from .records import Message, Record, Source
from .templates import fold_input
from .tokenize import gc_paused
from .validate import (
    TARGETS,
    _check_text,
    _json_list,
    _problem,
    apply_columns,
    parse_columns,
    parse_messages,
    summarize_problems,
)

__all__ = ["PAIR_FORMATS", "PairLoadResult", "PairRecord", "detect_pair_format",
           "is_preference_data", "is_preference_source", "load_pairs", "split_text_prompt",
           "to_pair"]

PAIR_FORMATS = ("standard", "alpaca", "conversational", "implicit")
PAIR_TARGETS = ("prompt", "instruction", "input", "chosen", "rejected")  # --columns left sides
ANSWERS = ("chosen", "rejected")
PROMPT_FIELDS = {"standard": ("prompt",), "conversational": ("prompt",),
                 "alpaca": ("instruction", "input"), "implicit": ()}


@dataclass(frozen=True)
class PairRecord:
    """One preference pair: the conversation before the answer, and two answers to it."""

    prompt: tuple[Message, ...]
    chosen: str
    rejected: str
    source: Source
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    def record(self, answer: str = "chosen") -> Record:
        """The SFT record prompt + that answer ("chosen" or "rejected")."""
        if answer not in ANSWERS:
            raise ValueError(f"answer must be 'chosen' or 'rejected', not {answer!r}")
        text = self.chosen if answer == "chosen" else self.rejected
        return Record((*self.prompt, Message("assistant", text)), self.source, self.meta)


@dataclass
class PairLoadResult:
    records: list[PairRecord]
    skipped: list[Problem]  # one per dropped row (its first problem); empty unless skip_invalid
    format: str = ""  # one of PAIR_FORMATS, or "mixed" across a directory's files
    source: str = ""
    notes: list[str] = field(default_factory=list)

    def summary(self, max_reasons: int = 5) -> str:
        """'Loaded 1,000 pairs (standard) from x.jsonl; skipped 2 invalid rows: ...'."""
        n, k = len(self.records), len(self.skipped)
        text = f"Loaded {n:,} {'pair' if n == 1 else 'pairs'} ({self.format}) from {self.source}"
        if k:
            reasons = summarize_problems(self.skipped)
            shown = ", ".join(f"{r} ({c:,})" for r, c in reasons[:max_reasons])
            text += f"; skipped {k:,} invalid {'row' if k == 1 else 'rows'}: {shown}"
        return "; ".join([text, *self.notes])


def is_preference_data(keys: Iterable[str], columns: str | Mapping[str, str] | None = None) -> bool:
    """Whether rows with these column names are preference pairs (chosen and rejected, after the
    --columns mapping, which may hold SFT or pair fields)."""
    mapping = parse_columns(columns, TARGETS + PAIR_TARGETS)
    return set(ANSWERS) <= set(apply_columns(dict.fromkeys(keys), mapping))


def is_preference_source(source: str | Path, columns: str | Mapping[str, str] | None = None) -> bool:
    """is_preference_data on the first readable row of a file, directory or datasets name (a
    JSON Lines file is read no further). Unreadable sources raise the DataError loading would."""
    for _, rows in open_source(str(source), []):
        for _, row in rows:
            if isinstance(row, dict):
                return is_preference_data(row, columns)
    return False


def detect_pair_format(keys: Iterable[str]) -> str | None:
    """The format from column names (after mapping); None when they are not pairs. A prompt
    column is "standard" here; load_pairs names it "conversational" when it holds messages."""
    keys = set(keys)
    if not set(ANSWERS) <= keys:
        return None
    return "alpaca" if "instruction" in keys else "standard" if "prompt" in keys else "implicit"


def load_pairs(source: str | Path, *, format: str = "auto",
               columns: str | Mapping[str, str] | None = None,
               skip_invalid: bool = False) -> PairLoadResult:
    """Load and validate every pair; raise one DataError listing all problems, unless
    skip_invalid (then bad rows are dropped and listed in `.skipped`)."""
    if format != "auto" and format not in PAIR_FORMATS:
        raise ConfigError(f"--format: unknown preference format {format!r}; use auto, "
                          f"{', '.join(PAIR_FORMATS)}")
    with gc_paused():  # millions of small acyclic objects: see load.load_records_report
        return _load(str(source), format, parse_columns(columns, PAIR_TARGETS), skip_invalid)


def _load(source: str, fmt: str, mapping: dict[str, str], skip_invalid: bool) -> PairLoadResult:
    records, skipped, fmt_name, notes = read_rows(
        source, fmt, mapping, skip_invalid, detect=detect_pair_format,
        check_columns=_column_problems, convert=to_pair, kind=PairRecord, noun="pairs",
        refine=_refine_format)
    return PairLoadResult(records, skipped, fmt_name, source, notes)


def _refine_format(fmt: str | None, parsed: list[tuple[int, dict]]) -> str | None:
    """A standard file whose prompts are message lists is conversational."""
    if fmt == "standard" and any(isinstance(_maybe_messages(row.get("prompt")), list)
                                 for _, row in parsed):
        return "conversational"
    return fmt


def _column_problems(path: str, keys: set[str], fmt: str | None,
                     mapping: dict[str, str]) -> list[Problem]:
    found = ", ".join(sorted(keys)) or "none"
    if fmt is None:
        return [Problem(path, None, None, f"not preference pairs (columns found: {found}); "
                        "expected chosen and rejected, with prompt or instruction (or neither: "
                        "their shared beginning is the prompt); map yours with --columns "
                        "chosen=COLUMN,rejected=COLUMN")]
    need = ANSWERS + PROMPT_FIELDS[fmt][:1]
    return [Problem(path, None, mapping.get(f, f), f"column missing in every row (columns found: "
                    f"{found}; format {fmt}); map it with --columns {f}=COLUMN or choose another "
                    "--format") for f in need if f not in keys]


def to_pair(row: dict, source: Source, fmt: str, mapping: dict[str, str]) -> PairRecord | list[Problem]:
    """Validate one mapped row of a known format. Returns the PairRecord or all its problems."""
    problems: list[Problem] = []

    def col(name: str) -> str:
        return mapping.get(name, name)

    def present(name: str) -> bool:
        if name in row:
            return True
        problems.append(_problem(source, col(name), "missing", fix="add the field to every row"))
        return False

    prompt: tuple[Message, ...] | None = None
    if fmt == "implicit":
        prompt, chosen, rejected = _implicit(row, source, col, present, problems)
    else:
        if fmt == "alpaca" and present("instruction"):
            ins = _check_text(row["instruction"], source, col("instruction"), True, problems)
            inp = row.get("input")  # `"input": null` is a common spelling of "no input"
            inp = "" if inp is None else _check_text(inp, source, col("input"), False, problems)
            prompt = (Message("user", ins, inp),)
        elif fmt != "alpaca" and present("prompt"):
            prompt = _prompt(row["prompt"], source, col("prompt"), problems)
        chosen, rejected = (_answer(row[a], prompt, source, col(a), problems) if present(a) else ""
                            for a in ANSWERS)
    if chosen and rejected and chosen.strip() == rejected.strip():
        problems.append(_problem(source, col("rejected"), "same as chosen",
                                 "ignoring surrounding whitespace",
                                 "a pair needs two different answers; fix the row or drop it"))
    if problems or prompt is None:
        return problems
    used = set(ANSWERS) | set(PROMPT_FIELDS[fmt])
    meta = {k: v for k, v in row.items() if k not in used}
    return PairRecord(prompt, chosen, rejected, source, meta)


def _maybe_messages(value):
    """A list of message dicts, also when CSV/Parquet stored it as a JSON string; else the value
    unchanged (a text prompt like "[INST] hi" stays text)."""
    if isinstance(value, str) and value.lstrip().startswith("["):
        parsed = _json_list(value)
        if isinstance(parsed, list) and parsed and all(isinstance(m, dict) for m in parsed):
            return parsed
    return value


def _prompt(value, source: Source, col: str, problems: list[Problem]) -> tuple[Message, ...] | None:
    value = _maybe_messages(value)
    if not isinstance(value, list):
        return (Message("user", _check_text(value, source, col, True, problems)),)
    msgs = parse_messages(value, source, col, problems)
    if msgs is not None:
        _check_ends_on_user(msgs, source, col, problems)
    return msgs


def _check_ends_on_user(msgs: tuple[Message, ...], source: Source, col: str,
                        problems: list[Problem], what: str = "does not end on a user turn") -> None:
    roles = [m.role for m in msgs]
    if not roles or roles[-1] != "user":
        problems.append(_problem(source, col, what,
                                 f"roles: {roles or 'none'}", "end it with the user message the "
                                 "answers reply to; move later turns into the answers or drop them"))


def _answer(value, prompt: tuple[Message, ...] | None, source: Source, col: str,
            problems: list[Problem]) -> str:
    """A string, one assistant message, or a list ending with one (after the prompt's messages)."""
    value = _maybe_messages(value)
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        return _check_text(value, source, col, True, problems)
    msgs = parse_messages(value, source, col, problems)
    if msgs is None:
        return ""
    lead = [(m.role, m.content) for m in msgs[:-1]]
    if not msgs or msgs[-1].role != "assistant" or (
            lead and prompt is not None and lead != [(m.role, fold_input(m)) for m in prompt]):
        roles = [m.role for m in msgs]
        problems.append(_problem(source, col, "is not one assistant answer", f"roles: {roles or 'none'}",
                                 "give the reply as a string or as one {role: assistant, content} "
                                 "message (a list may repeat the prompt's messages before it)"))
        return ""
    return msgs[-1].content


def _implicit(row: dict, source: Source, col, present, problems: list[Problem]):
    """(prompt, chosen, rejected) from two whole conversations or two texts; prompt None on problems."""
    if not all([present(a) for a in ANSWERS]):  # a list, not a generator: report both
        return None, "", ""
    c, r = (_maybe_messages(row[a]) for a in ANSWERS)
    if isinstance(c, list) and isinstance(r, list):
        return _implicit_chat(c, r, source, col, problems)
    before = len(problems)
    for value, a in ((c, "chosen"), (r, "rejected")):
        if not isinstance(value, list):
            _check_text(value, source, col(a), True, problems)
    if len(problems) > before:
        return None, "", ""
    if isinstance(c, list) or isinstance(r, list):
        problems.append(_problem(source, col("rejected"), "chosen and rejected must both be "
                                 "conversations or both be texts",
                                 f"got {'an array' if isinstance(c, list) else 'a string'} and "
                                 f"{'an array' if isinstance(r, list) else 'a string'}",
                                 "write both the same way"))
        return None, "", ""
    if c == r:
        return None, c, r  # the caller reports "same as chosen"
    text, chosen, rejected = split_text_prompt(c, r)
    if not text.strip():
        problems.append(_problem(source, col("rejected"), "implicit prompt: chosen and rejected "
                                 "share no prompt", "no common beginning that ends at a word "
                                 "boundary", "add a prompt column, or start both texts with the "
                                 "same prompt"))
    for answer, a in ((chosen, "chosen"), (rejected, "rejected")):
        if text.strip() and not answer.strip():
            problems.append(_problem(source, col(a), "implicit prompt: nothing left for the answer",
                                     f"the whole text is the shared prompt {_tail(text)}",
                                     "add the answer after the prompt, or add a prompt column"))
    return (Message("user", text),), chosen, rejected


def _implicit_chat(c: list, r: list, source: Source, col, problems: list[Problem]):
    cm = parse_messages(c, source, col("chosen"), problems)
    rm = parse_messages(r, source, col("rejected"), problems)
    if cm is None or rm is None:
        return None, "", ""
    ok = True
    for msgs, a in ((cm, "chosen"), (rm, "rejected")):
        if not msgs or msgs[-1].role != "assistant":
            ok = False
            last = f"ends with a {msgs[-1].role} turn" if msgs else "has no messages"
            problems.append(_problem(source, col(a), "implicit prompt: nothing left for the answer",
                                     f"the conversation {last}", "end it with the assistant's answer"))
    if not ok:
        return None, "", ""
    n = next((i for i, (x, y) in enumerate(zip(cm, rm, strict=False)) if x != y), min(len(cm), len(rm)))
    if n == 0:
        problems.append(_problem(source, col("rejected"), "implicit prompt: chosen and rejected "
                                 "share no prompt", "they differ from the first message",
                                 "give both the same messages before the final answer, or add "
                                 "a prompt column"))
        return None, "", ""
    if cm[:-1] != rm[:-1]:
        problems.append(_problem(source, col("rejected"), "implicit prompt: chosen and rejected "
                                 "differ before their final answer", f"from message {n + 1} on",
                                 "only the last assistant message may differ; put earlier turns "
                                 "in both, or add a prompt column"))
        return None, "", ""
    _check_ends_on_user(cm[:-1], source, f"{col('chosen')}/{col('rejected')}", problems,
                        "implicit prompt: the shared prompt does not end on a user turn")
    return cm[:-1], cm[-1].content, rm[-1].content


def split_text_prompt(chosen: str, rejected: str) -> tuple[str, str, str]:
    """(prompt, chosen answer, rejected answer) of two texts that begin the same way.

    The prompt is their longest common prefix, cut back to just after its last whitespace
    character (space, newline, tab...), so no word is split between prompt and answer; that
    whitespace stays with the prompt, where the model starts writing. "Q: 2+2?\\nA: 4" and
    "Q: 2+2?\\nA: 5" give ("Q: 2+2?\\nA: ", "4", "5"); "cat" and "cats" share no prompt ("").
    Either part may come out empty or blank: load_pairs reports that.
    """
    k = len(os.path.commonprefix([chosen, rejected]))
    cut = next((i for i in range(k, 0, -1) if chosen[i - 1].isspace()), 0)
    return chosen[:cut], chosen[cut:], rejected[cut:]


def _tail(text: str, limit: int = 30) -> str:
    return repr(text if len(text) <= limit else "..." + text[-limit:])
