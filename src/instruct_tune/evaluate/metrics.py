"""Metrics that show whether a model follows instructions and stops.

Everything here works on plain values (generated token counts, texts, stop flags, references), so
the metrics can be tested without a model. `score` is the one entry point the evaluator uses.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from rapidfuzz.distance import LCSseq

# Markers of the common templates: an output that contains one has run on into a new turn.
DEFAULT_MARKERS: tuple[str, ...] = ("### Instruction:", "### Response:", "### Input:", "<|im_start|>")

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


@dataclass(frozen=True)
class Generation:
    """One model output, cut at the first stop token."""

    token_ids: list[int]  # generated tokens without the stop token or padding
    text: str  # decoded with special tokens skipped: what the user sees
    raw: str  # decoded with special tokens kept, so a leaked <|im_start|> is visible
    stopped: bool  # a stop token was generated within the token limit

    @property
    def length(self) -> int:
        return len(self.token_ids)


def normalize(text: str) -> str:
    """SQuAD-style normalization: lowercase, drop punctuation and articles, squeeze whitespace."""
    text = text.lower().translate(_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, reference: str) -> bool:
    return prediction.strip() == reference.strip()


def normalized_exact_match(prediction: str, reference: str) -> bool:
    return normalize(prediction) == normalize(reference)


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1 over normalized word tokens (LCS via rapidfuzz, which is C++ and fast)."""
    pred, ref = normalize(prediction).split(), normalize(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    lcs = LCSseq.similarity(pred, ref)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(pred), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def leaked_marker(raw_output: str, markers: Sequence[str]) -> str | None:
    """The first template marker the output runs on into, or None."""
    hits = [(raw_output.find(m), m) for m in markers if m and m in raw_output]
    return min(hits)[1] if hits else None


def template_markers(template, extra: Sequence[str] = DEFAULT_MARKERS) -> list[str]:
    """The default markers plus the fixed lines of `template`'s own prompt (e.g. '### Response:',
    '<|im_start|>assistant'), found by rendering a probe conversation around sentinel contents."""
    from ..data.records import Message

    found: list[str] = list(extra)
    probes = [
        (Message("user", "\x00"),),
        (Message("user", "\x00", "\x00"),),
        (Message("user", "\x00"), Message("assistant", "\x00"), Message("user", "\x00")),
    ]
    for messages in probes:
        try:
            rendered = template.render_prompt(list(messages))
        except Exception:  # a template may not support an input block or several turns
            continue
        for part in rendered.split("\x00"):
            for line in part.splitlines():
                line = line.strip()
                # Short fragments (":", "\n") would flag ordinary text; keep real markers only.
                if len(line) >= 3 and line not in found:
                    found.append(line)
    return found


def _summary(gens: Sequence[Generation], refs: Sequence[str], markers: Sequence[str]) -> dict:
    n = len(gens)
    if n == 0:
        return {"n": 0}
    lengths = np.array([g.length for g in gens], dtype=float)
    return {
        "n": n,
        "stop_rate": sum(g.stopped for g in gens) / n,
        "template_leak_rate": sum(leaked_marker(g.raw, markers) is not None for g in gens) / n,
        "mean_length": float(lengths.mean()),
        "p95_length": float(np.percentile(lengths, 95)),
        "exact_match": sum(exact_match(g.text, r) for g, r in zip(gens, refs, strict=True)) / n,
        "normalized_exact_match": sum(normalized_exact_match(g.text, r)
                                      for g, r in zip(gens, refs, strict=True)) / n,
        "rouge_l": float(np.mean([rouge_l(g.text, r) for g, r in zip(gens, refs, strict=True)])),
    }


METRIC_KEYS = ("stop_rate", "template_leak_rate", "mean_length", "p95_length", "exact_match",
               "normalized_exact_match", "rouge_l")


def score(gens: Sequence[Generation], refs: Sequence[str], markers: Sequence[str] = DEFAULT_MARKERS,
          tasks: Sequence[str | None] | None = None) -> dict:
    """All metrics over the whole set, plus `by_task` ({} when no record carries a task)."""
    if len(gens) != len(refs):
        raise ValueError(f"{len(gens)} generations but {len(refs)} references")
    report = _summary(gens, refs, markers)
    report["by_task"] = {}
    if tasks and any(t is not None for t in tasks):
        for task in sorted({t or "(none)" for t in tasks}):
            idx = [i for i, t in enumerate(tasks) if (t or "(none)") == task]
            report["by_task"][task] = _summary([gens[i] for i in idx], [refs[i] for i in idx], markers)
    return report


def difference(tuned: dict, base: dict) -> dict:
    """tuned - base for every metric, overall and per task present in both."""
    delta = {k: tuned[k] - base[k] for k in METRIC_KEYS if k in tuned and k in base}
    delta["by_task"] = {t: {k: m[k] - base["by_task"][t][k] for k in METRIC_KEYS if k in m}
                        for t, m in tuned.get("by_task", {}).items() if t in base.get("by_task", {})}
    return delta
