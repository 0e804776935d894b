"""`instruct-tune inspect DATA --model M`: see exactly what training will see.

The first rows are shown token-run by token-run: prompt text dimmed, trained text highlighted, and
special tokens made visible (⟨bos⟩, ⟨eos⟩, or the template's stop token). A summary follows: rows
kept and dropped (and why), tokens, trained share, length percentiles. `--json` prints one JSON
object per row (input_ids, labels, text, ...) on stdout; the summary then goes to stderr.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from rich.text import Text

from ..errors import Problem
from .records import Record
from .templates import Template
from .tokenize import IGNORE, Example, ExampleSet, get_encoder, left_cut_note

DEFAULT_ROWS = 3
PROMPT_STYLE, TRAINED_STYLE, SPECIAL_STYLE = "dim", "bold green", "bold black on green"
OPEN, CLOSE = "⟦", "⟧"  # trained-span marks when there is no colour to show them


def _special_names(tokenizer, template: Template) -> dict[int, str]:
    enc = get_encoder(tokenizer, template)
    names = {tid: f"⟨{tok}⟩" for tok, tid in tokenizer.get_added_vocab().items()}
    if tokenizer.bos_token_id is not None:
        names[tokenizer.bos_token_id] = "⟨bos⟩"
    names[enc.stop_id] = f"⟨{enc.stop_text}⟩"
    names[enc.eos_id] = "⟨eos⟩"
    return names


def _runs(ex: Example, specials: dict[int, str]):
    """(start, end, trained, special) spans: runs of plain tokens, specials one by one."""
    start = 0
    ids, labels = ex.input_ids, ex.labels
    for i in range(1, len(ids) + 1):
        if (i == len(ids) or ids[i] in specials or ids[i - 1] in specials
                or (labels[i] == IGNORE) != (labels[i - 1] == IGNORE)):
            yield start, i, labels[start] != IGNORE, ids[start] in specials
            start = i


def render_example(ex: Example, tokenizer, specials: dict[int, str], marks: bool = False,
                   styles: tuple[str, str] = (TRAINED_STYLE, SPECIAL_STYLE)) -> Text:
    """Coloured text of one example. Runs are decoded in context (prefix difference), so
    SentencePiece's leading-space handling and multi-byte characters come out right. With
    `marks` (no colour: piped, CI logs, NO_COLOR) trained spans are also bracketed ⟦like this⟧.
    `styles`: of trained text and trained special tokens (a rejected answer has its own)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)

    def decode(ids):
        if backend is not None:
            return backend.decode(ids, skip_special_tokens=False)
        return tokenizer.decode(ids, skip_special_tokens=False)

    out = Text()
    done, inside = "", False
    for s, e, trained, special in _runs(ex, specials):
        upto = decode(ex.input_ids[:e])
        piece = upto[len(done):] if upto.startswith(done) else decode(ex.input_ids[s:e])
        done = upto
        if marks and trained != inside:
            out.append(OPEN if trained else CLOSE)
            inside = trained
        if special:
            out.append(specials[ex.input_ids[s]], styles[1] if trained else "dim reverse")
        else:
            out.append(piece, styles[0] if trained else PROMPT_STYLE)
    if inside:
        out.append(CLOSE)
    return out


def _rows(n: int) -> str:
    return f"{n:,} row" + ("" if n == 1 else "s")


def _reason(p: Problem) -> str:
    head = p.message.split(" (", 1)[0]
    return f"[{p.field}] {head}" if p.field else head


def _grouped(problems: list[Problem], top: int = 5) -> list[tuple[str, str]]:
    """'count × reason — first at file:line (detail)' lines, most common reason first."""
    lines = []
    for reason, count in Counter(map(_reason, problems)).most_common(top):
        first = next(p for p in problems if _reason(p) == reason)
        detail = first.message.split(" (", 1)[1] if " (" in first.message else ""
        where = f"{first.path}:{first.line}" if first.line is not None else first.path
        lines.append(("", f"{count:,} × {reason} — first at {where}" + (f" ({detail}" if detail else "")))
    return lines


def summary(records: list[Record], skipped, result: ExampleSet, template: Template,
            tokenizer, max_length: int, truncation: str = "drop") -> Text:
    """The summary as aligned 'label  value' lines (plain lines: long paths are never cut)."""
    lengths = result.lengths if len(result) else np.zeros(1, dtype=np.int64)
    trained = int(result.trained.sum())
    total = int(lengths.sum())
    enc = get_encoder(tokenizer, template)
    lines = [("template", f"{template.name} (stop token {enc.stop_text!r}, id {enc.stop_id})")]
    lines.append(("loaded", _rows(len(records) + len(skipped))))
    if skipped:
        lines += [("invalid", f"{_rows(len(skipped))} skipped (--skip-invalid)"), *_grouped(skipped)]
    lines.append(("kept", _rows(len(result.examples)) + (" (from cache)" if result.cached else "")))
    if result.dropped:
        lines += [("dropped", _rows(len(result.dropped))), *_grouped(result.dropped)]
    lines.append(("tokens", f"{total:,} ({trained:,} trained, {trained / max(total, 1):.1%})"))
    p50, p90, p99 = np.percentile(lengths, [50, 90, 99])
    lines.append(("length", f"p50 {p50:.0f} · p90 {p90:.0f} · p99 {p99:.0f} · max {lengths.max()} "
                            f"(--max-length {max_length})"))
    if truncation == "left" and (cut := left_cut_note(result.examples, max_length)):
        lines.append(("truncated", cut[0] + (f" ({cut[1]})" if cut[1] else "")))
    text = Text()
    for label, value in lines:
        text.append(f"{label:<9} ", "bold")
        text.append(value + "\n")
    return text
