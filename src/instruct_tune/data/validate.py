"""Turn one parsed row (a dict) into a `Record`, or into the list of everything wrong with it.

Readers (load.py) know files and line numbers; this module knows formats and fields. Every check
runs on every row so one pass reports all problems. Messages follow one shape,
"what is wrong (detail); what to do", so `summarize_problems` can group them by the part before
the detail.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping

from ..errors import ConfigError, Problem
from .records import Message, Record, Source

FORMATS = ("alpaca", "prompt_completion", "chat")
# Required and optional fields per format (the names after --columns mapping).
REQUIRED = {"alpaca": ("instruction", "output"), "prompt_completion": ("prompt", "completion"),
            "chat": ("messages",)}
OPTIONAL = {"alpaca": ("input",), "prompt_completion": (), "chat": ()}
TARGETS = ("instruction", "input", "output", "prompt", "completion", "messages")
# ShareGPT spells chats as conversations: [{from: human|gpt|system, value}]; accepting it is cheap.
ROLE_ALIASES = {"system": "system", "user": "user", "assistant": "assistant",
                "human": "user", "gpt": "assistant"}
# Column names seen in the wild, used only to suggest a --columns mapping in error messages.
SYNONYMS = {"instruction": ("question", "query", "task", "problem", "text"),
            "output": ("answer", "response", "target", "solution", "reply", "label")}
# Columns that usually hold an alpaca `input` (the text the instruction is about): left unmapped,
# they would silently end up in meta and the model would never see them.
INPUT_SYNONYMS = ("input", "context", "passage", "text", "document", "paragraph", "article",
                  "source", "content")
# NUL characters and lone surrogates: the latter is how undecodable bytes arrive
# (surrogateescape) and they cannot be re-encoded as UTF-8 by any tokenizer.
_BAD_CHARS = re.compile("[\x00\ud800-\udfff]")


def parse_columns(columns: str | Mapping[str, str] | None,
                  targets: tuple[str, ...] = TARGETS) -> dict[str, str]:
    """'instruction=question,output=answer' (or a dict) -> {target field: column in the file}.
    `targets`: the field names allowed on the left (preference pairs have their own)."""
    if not columns:
        return {}
    if isinstance(columns, str):
        pairs = []
        for part in filter(None, (p.strip() for p in columns.split(","))):
            target, sep, src = (s.strip() for s in part.partition("="))
            if not sep or not target or not src:
                raise ConfigError(f"--columns: cannot read {part!r}; write FIELD=COLUMN pairs, "
                                  "e.g. --columns instruction=question,output=answer")
            pairs.append((target, src))
        columns = dict(pairs)
    unknown = sorted(set(columns) - set(targets))
    if unknown:
        raise ConfigError(f"--columns: unknown field(s) {', '.join(unknown)}; the left side of "
                          f"each pair must be one of {', '.join(targets)}")
    return dict(columns)


def check_format(fmt: str) -> str:
    if fmt != "auto" and fmt not in FORMATS:
        raise ConfigError(f"--format: unknown format {fmt!r}; use auto, {', '.join(FORMATS)}")
    return fmt


def detect_format(keys: Iterable[str]) -> str | None:
    """Guess the format from column names (after mapping); None when nothing fits."""
    keys = set(keys)
    if keys & {"messages", "conversations"}:
        return "chat"
    if "instruction" in keys:
        return "alpaca"
    if "prompt" in keys:
        return "prompt_completion"
    return None


def column_problems(path: str, keys: set[str], fmt: str | None,
                    mapping: dict[str, str]) -> list[Problem]:
    """File-level check: the format is known and its required columns exist in some row."""
    found = ", ".join(sorted(keys)) or "none"
    if fmt is None:
        hint = suggest_columns(keys)
        fix = f"map yours with --columns {hint}" if hint else \
            "map yours with --columns FIELD=COLUMN, or set --format"
        return [Problem(path, None, None, f"no known record format (columns found: {found}); "
                        "expected alpaca (instruction, output, optional input), "
                        f"prompt_completion (prompt, completion) or chat (messages); {fix}")]
    problems = []
    for field in REQUIRED[fmt]:
        if field == "messages" and "conversations" in keys:
            continue
        if field not in keys:
            col = mapping.get(field, field)
            problems.append(Problem(path, None, col, f"column missing in every row "
                                    f"(columns found: {found}; format {fmt}); map it with "
                                    f"--columns {field}=COLUMN or choose another --format"))
    return problems


def suggest_columns(keys: set[str]) -> str | None:
    """A --columns value built from common synonyms, e.g. 'instruction=question,output=answer';
    it maps input= too when a likely input column exists, so following it loses no text."""
    lower = {k.lower(): k for k in keys}
    picks = {}
    for target, names in SYNONYMS.items():
        hit = next((lower[n] for n in names if n in lower), None)
        if hit is None:
            return None
        picks[target] = hit
    used = set(picks.values())
    inp = next((lower[n] for n in INPUT_SYNONYMS if n in lower and lower[n] not in used), None)
    if inp is not None:
        picks = {"instruction": picks["instruction"], "input": inp, "output": picks["output"]}
    return ",".join(f"{t}={c}" for t, c in picks.items())


def unmapped_input_note(keys: Iterable[str], fmt: str | None, mapping: dict[str, str]) -> str | None:
    """A warning when an alpaca file has no input but a column that looks like one (it would
    only be kept as meta, never shown to the model)."""
    keys = set(keys)
    if fmt != "alpaca" or "input" in keys:
        return None
    used = set(mapping.values())
    cols = [k for k in sorted(keys) if k.lower() in INPUT_SYNONYMS and k not in used
            and k not in TARGETS]
    if not cols:
        return None
    base = ",".join(f"{t}={c}" for t, c in mapping.items())
    fix = f"--columns {base + ',' if base else ''}input={cols[0]}"
    return (f"warning: column {', '.join(repr(c) for c in cols)} is not mapped to input, so it is "
            f"kept as metadata and never shown to the model; if it is the input text, pass {fix}")


def missing_mapped_columns(path: str, columns: Iterable[str], mapping: dict[str, str]) -> list[Problem]:
    """--columns names a column the file does not have (a typo): say so with the real names."""
    columns = list(columns)
    return [Problem(path, None, src, f"column {src!r} (from --columns) is not in the file; "
                    f"columns: {', '.join(columns) or 'none'}")
            for src in mapping.values() if src not in columns]


def apply_columns(row: dict, mapping: dict[str, str]) -> dict:
    """Rename the user's columns to our field names; unmapped columns stay as they are."""
    if not mapping:
        return row
    out = {k: v for k, v in row.items() if k not in mapping.values() and k not in mapping}
    for target, src in mapping.items():
        if src in row:
            out[target] = row[src]
    return out


def to_record(row: dict, source: Source, fmt: str,
              mapping: dict[str, str]) -> Record | list[Problem]:
    """Validate one mapped row of a known format. Returns the Record or all its problems."""
    problems: list[Problem] = []

    def text(field: str, required: bool = True) -> str:
        value = row.get(field)
        # Fast path (nearly every row): plain non-blank ASCII text; isascii() is O(1) in CPython.
        if type(value) is str and value.isascii() and "\x00" not in value and not value.isspace() \
                and value:
            return value
        col = mapping.get(field, field)
        if field not in row:
            if required:
                problems.append(_problem(source, col, "missing", fix="add the field to every row"))
            return ""
        if value is None and not required:
            return ""  # `"input": null` is a common spelling of "no input"
        return _check_text(value, source, col, required, problems)

    meta = {k: v for k, v in row.items() if k not in REQUIRED[fmt] and k not in OPTIONAL[fmt]}
    if fmt == "alpaca":
        ins, inp, out = text("instruction"), text("input", required=False), text("output")
        messages = (Message("user", ins, inp), Message("assistant", out))
    elif fmt == "prompt_completion":
        messages = (Message("user", text("prompt")), Message("assistant", text("completion")))
    else:
        key = "messages" if "messages" in row or "conversations" not in row else "conversations"
        meta.pop(key, None)
        messages = _chat(row.get(key), key in row, source, mapping.get(key, key), problems)
    if problems:
        return problems
    return Record(messages, source, meta)


def _chat(value, present: bool, source: Source, col: str,
          problems: list[Problem]) -> tuple[Message, ...]:
    """Validate a conversation: a list of {role, content} (or ShareGPT {from, value}) dicts."""
    if not present:
        problems.append(_problem(source, col, "missing",
                                 fix="add a list of {role, content} messages"))
        return ()
    out = parse_messages(value, source, col, problems)
    if out is None:
        return ()
    roles = [m.role for m in out]
    if "assistant" not in roles:
        problems.append(_problem(source, col, "no assistant turn", f"roles: {roles or 'none'}",
                                 "a conversation needs at least one reply to train on"))
    elif "user" not in roles:
        problems.append(_problem(source, col, "no user turn", f"roles: {roles}",
                                 "add the user message the assistant answers"))
    elif roles[-1] != "assistant":
        problems.append(_problem(source, col, "last turn is not from the assistant",
                                 f"roles: {roles}", "drop the trailing turns, they would not be trained"))
    return out


def parse_messages(value, source: Source, col: str,
                   problems: list[Problem]) -> tuple[Message, ...] | None:
    """A list of {role, content} (or ShareGPT {from, value}) dicts as Messages, roles checked one
    by one (not their order); None, with the problems appended, when it is not one."""
    if isinstance(value, str) and value.lstrip().startswith("["):
        value = _json_list(value)  # CSV/Parquet often store the conversation as a JSON string
    if not isinstance(value, list):
        problems.append(_problem(source, col, "must be a list of messages",
                                 f"got {_kind(value)}", "write [{role, content}, ...]"))
        return None
    out, before = [], len(problems)
    for i, msg in enumerate(value):
        where = f"{col}[{i}]"
        if not isinstance(msg, dict):
            problems.append(_problem(source, where, "must be an object with role and content",
                                     f"got {_kind(msg)}"))
            continue
        role_key = "role" if "role" in msg or "from" not in msg else "from"
        body_key = "content" if "content" in msg or "value" not in msg else "value"
        role = msg.get(role_key)
        if not isinstance(role, str) or role.lower() not in ROLE_ALIASES:
            detail = "missing" if role is None else f"got {_short(role)}"
            problems.append(_problem(source, f"{where}.{role_key}", "unknown role", detail,
                                     "use system, user or assistant (ShareGPT human/gpt also work)"))
            continue
        role = ROLE_ALIASES[role.lower()]
        if body_key not in msg:
            problems.append(_problem(source, f"{where}.{body_key}", "missing",
                                     fix="every message needs its text"))
            continue
        content = _check_text(msg[body_key], source, f"{where}.{body_key}", role != "system",
                              problems)
        out.append(Message(role, content))
    return None if len(problems) > before else tuple(out)


def _check_text(value, source: Source, col: str, required: bool, problems: list[Problem]) -> str:
    """Append a problem unless `value` is a usable string; return it (or "")."""
    if not isinstance(value, str):
        got = "null" if value is None else f"{_kind(value)} {_short(value)}"
        problems.append(_problem(source, col, "must be a string", f"got {got}",
                                 "quote the value or fix the column type"))
        return ""
    if required and (not value or value.isspace()):  # not .strip(): no copy of a 100 MB string
        problems.append(_problem(source, col, "is empty", fix="fill it in or drop the row"))
    elif bad := _BAD_CHARS.search(value):
        code, at = ord(bad.group()), bad.start()
        if code == 0:
            detail, fix = f"NUL character at position {at}", "remove it (binary data?)"
        elif 0xDC80 <= code <= 0xDCFF:  # an undecodable byte, kept by surrogateescape
            detail = f"byte 0x{code & 0xFF:02x} at position {at} is not valid UTF-8"
            fix = "re-encode the file as UTF-8, e.g. iconv -f latin1 -t utf-8 IN > OUT"
        else:
            detail, fix = f"unpaired surrogate U+{code:04X} at position {at}", "remove it"
        problems.append(_problem(source, col, "contains invalid text", detail, fix))
    return value


def _json_list(value: str):
    import json

    try:
        return json.loads(value)
    except (ValueError, RecursionError):
        return value


def _problem(source: Source, field: str | None, what: str, detail: str = "",
             fix: str = "") -> Problem:
    msg = what + (f" ({detail})" if detail else "") + (f"; {fix}" if fix else "")
    return Problem(source.path, source.line, field, msg)


def _kind(value) -> str:
    """JSON's name for a Python value's type, so messages speak the user's language."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), type(value).__name__)


def _short(value, limit: int = 40) -> str:
    """A value for a message, never the 100 MB the row may hold."""
    try:
        text = repr(value)
    except RecursionError:
        text = "<deeply nested value>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def problem_reason(p: Problem) -> str:
    """The grouping key of a problem: its field and the message up to the detail/fix."""
    head = re.split(r" \(|; ", p.message, maxsplit=1)[0]
    field = re.sub(r"\[\d+\]", "[]", p.field) if p.field else None  # messages[3] ~ messages[0]
    return f"[{field}] {head}" if field else head


def summarize_problems(problems: Iterable[Problem]) -> list[tuple[str, int]]:
    """(reason, count) pairs, most common first: 'skipped 3 rows: [output] is empty (2), ...'."""
    return Counter(problem_reason(p) for p in problems).most_common()
