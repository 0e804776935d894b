"""`instruct-tune inspect PAIRS --model M`: a preference pair as training sees it.

The shared prompt is shown once (dimmed, never trained), then the chosen answer (highlighted: its
log-prob is raised) and the rejected answer (red: its log-prob is lowered), each with its stop
token made visible and decoded in context, exactly as data/inspect.py shows an SFT row. The
summary says how many pairs were kept or dropped and why, their token lengths, and the length
bias: DPO's summed log-probs reward whichever answer the data systematically favours, length too.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from rich.text import Text

from ..errors import Problem
from .inspect import _grouped, render_example
from .pair_tokenize import PairExample, PairSet
from .templates import Template
from .tokenize import IGNORE, Example, get_encoder

__all__ = ["REJECTED_STYLES", "LengthBias", "length_bias", "pair_json", "pair_summary",
           "render_pair"]
REJECTED_STYLES = ("bold red", "bold white on red")  # rejected text, rejected special tokens


@dataclass(frozen=True)
class LengthBias:
    """How the chosen answers' lengths compare with the rejected ones' (in words or tokens)."""

    pairs: int
    chosen_mean: float
    rejected_mean: float
    chosen_longer: float  # share of pairs whose chosen answer is longer
    rejected_longer: float  # share whose rejected answer is longer (the rest: equal length)
    z: float  # chosen_longer vs rejected_longer under "no bias" (a sign test), in standard errors

    @property
    def mean_difference(self) -> float:
        return self.chosen_mean - self.rejected_mean

    @property
    def longer_when_different(self) -> float:
        """Share of the pairs with different lengths whose chosen answer is the longer one: what a
        "prefer the longer answer" rule gets right (0.5: length says nothing)."""
        differ = self.chosen_longer + self.rejected_longer
        return self.chosen_longer / differ if differ else 0.5

    def describe(self, unit: str) -> str:
        """'chosen longer in 63.0% of pairs, shorter in 30.0%; mean 41.2 vs 30.1 tokens (+11.1)'."""
        return (f"chosen longer in {self.chosen_longer:.1%} of pairs, shorter in "
                f"{self.rejected_longer:.1%}; mean {self.chosen_mean:,.1f} vs "
                f"{self.rejected_mean:,.1f} {unit} ({self.mean_difference:+,.1f})")


def length_bias(chosen: Sequence[int], rejected: Sequence[int]) -> LengthBias:
    """LengthBias of paired lengths. `z` is the sign test's statistic: (longer - shorter) /
    sqrt(longer + shorter) over the pairs whose lengths differ, ~N(0, 1) when length is unrelated
    to the preference, so a bias in a handful of pairs is not mistaken for one in the data."""
    c, r = np.asarray(chosen, dtype=np.float64), np.asarray(rejected, dtype=np.float64)
    n = len(c)
    if n == 0:
        return LengthBias(0, 0.0, 0.0, 0.0, 0.0, 0.0)
    longer, shorter = int((c > r).sum()), int((c < r).sum())
    z = (longer - shorter) / math.sqrt(longer + shorter) if longer + shorter else 0.0
    return LengthBias(n, float(c.mean()), float(r.mean()), longer / n, shorter / n, z)


def _example(ids: list[int], prompt: list[int], source) -> Example:
    return Example(prompt + ids, [IGNORE] * len(prompt) + ids, source)


def render_pair(pair: PairExample, tokenizer, specials: dict[int, str],
                marks: bool = False) -> tuple[Text, Text, Text]:
    """(prompt, chosen, rejected) as coloured text. Each answer is rendered after the prompt (so
    it decodes in context) and cut off where the prompt's own rendering ends."""
    prompt = render_example(_example([], pair.prompt_ids, pair.source), tokenizer, specials, marks)
    cut = len(prompt.plain)
    chosen = render_example(pair.example("chosen"), tokenizer, specials, marks)
    rejected = render_example(_example(pair.rejected_ids, pair.prompt_ids, pair.source), tokenizer,
                              specials, marks, styles=REJECTED_STYLES)
    return prompt, chosen[cut:], rejected[cut:]


def pair_json(pair: PairExample, tokenizer) -> dict:
    """One pair for scripts: ids of each part, and their text with special tokens kept."""
    def text(ids: list[int]) -> str:
        return tokenizer.decode(ids, skip_special_tokens=False)

    return {"source": str(pair.source), "line": pair.source.line,
            "prompt_ids": pair.prompt_ids, "chosen_ids": pair.chosen_ids,
            "rejected_ids": pair.rejected_ids, "prompt": text(pair.prompt_ids),
            "chosen": text(pair.chosen_ids), "rejected": text(pair.rejected_ids),
            "num_tokens": len(pair)}


_TOO_LONG = re.compile(r"prompt (\d+) \+ longest answer (\d+) tokens > --max-length")


def _dropped(problems: Sequence[Problem], max_length: int) -> list[tuple[str, str]]:
    """Why pairs were dropped: those over --max-length as one line (each message holds its own
    sizes, so grouping by message would list every pair), the rest grouped by reason."""
    long = [(p, m) for p in problems if (m := _TOO_LONG.search(p.message))]
    rest = [p for p in problems if not _TOO_LONG.search(p.message)]
    lines = []
    if long:
        first, m = long[0]
        need = max(int(m[1]) + int(m[2]) for _, m in long)
        lines.append(("", f"{len(long):,} × prompt + longer answer over --max-length {max_length}"
                          f" — first at {first.path}:{first.line} (prompt {m[1]} + answer {m[2]} "
                          f"tokens); the longest needs {need:,}"))
    return lines + _grouped(rest)


def _pairs(n: int) -> str:
    return f"{n:,} pair" + ("" if n == 1 else "s")


def pair_summary(loaded: int, skipped: Sequence[Problem], result: PairSet, template: Template,
                 tokenizer, max_length: int) -> Text:
    """Aligned 'label  value' lines: pairs kept and dropped (and why), tokens, length bias."""
    enc = get_encoder(tokenizer, template)
    ex = result.examples
    prompt = np.array([len(p.prompt_ids) for p in ex] or [0])
    chosen = np.array([len(p.chosen_ids) for p in ex] or [0])
    rejected = np.array([len(p.rejected_ids) for p in ex] or [0])
    lengths = np.array([len(p) for p in ex] or [0])
    lines = [("template", f"{template.name} (stop token {enc.stop_text!r}, id {enc.stop_id})"),
             ("loaded", _pairs(loaded + len(skipped)))]
    if skipped:
        lines += [("invalid", f"{_pairs(len(skipped))} skipped (--skip-invalid)"), *_grouped(list(skipped))]
    lines.append(("kept", _pairs(len(ex)) + (" (from cache)" if result.cached else "")))
    if result.dropped:
        lines += [("dropped", _pairs(len(result.dropped))), *_dropped(result.dropped, max_length)]
    lines.append(("tokens", f"prompt {int(prompt.sum()):,} · chosen {int(chosen.sum()):,} · "
                            f"rejected {int(rejected.sum()):,} (stop tokens included)"))
    p50, p90, p99 = np.percentile(lengths, [50, 90, 99])
    lines.append(("length", f"p50 {p50:.0f} · p90 {p90:.0f} · p99 {p99:.0f} · max {lengths.max()} "
                            f"(prompt + longer answer; --max-length {max_length})"))
    if ex:
        bias = length_bias(chosen.tolist(), rejected.tolist())
        lines.append(("bias", bias.describe("tokens")))
    text = Text()
    for label, value in lines:
        text.append(f"{label:<9} ", "bold")
        text.append(value + "\n")
    return text

