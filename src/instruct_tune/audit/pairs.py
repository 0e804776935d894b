"""`instruct-tune audit PAIRS`: what in a preference file would mislead preference tuning.

Three levers, in the report style of the SFT audit (findings.py, render.py):
- pairs: exact duplicate pairs (same prompt, chosen and rejected, ignoring case and spacing: the
  SFT audit's `duplicate_rows` over a row per pair), prompts repeated over many pairs, pairs that
  contradict each other (A over B and B over A), invalid rows, pairs over --max-length;
- length bias: are chosen answers systematically longer (or shorter) than rejected ones, in words
  and, with --model, in tokens (what DPO's summed log-probs count);
- contamination: the SFT audit's `contamination_lever` on prompt + chosen answer against
  --eval-data (SFT records, or a preference file's prompts with their chosen answers).

Why the length threshold: DPO raises the chosen answer's log-prob against the rejected one's, so
anything that separates the two answers systematically is learnable signal, length included.
Models preference-tuned on data where the longer answer usually wins learn to write longer rather
than better (Singhal et al. 2023, "A Long Way to Go: Investigating Length Correlations in RLHF";
Park et al. 2024, "Disentangling Length from Quality in Direct Preference Optimization"). We flag
a set when "prefer the longer answer" is right in >= 60% of the pairs whose lengths differ (3 in
5: a rule a model can pick up as easily as quality) AND the sign test says it is not chance
(|z| >= 3, so 20 pairs with 13 longer do not raise a warning, 1,000 with 600 do). The mirror case
(chosen shorter, <= 40%) teaches terseness and is flagged the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..data.pair_inspect import LengthBias, length_bias
from ..data.pairs import PairRecord
from ..data.records import Message, Record, Source
from ..errors import InstructTuneError, Problem
from .contamination import contamination_lever, not_checked
from .context import AuditData
from .findings import (
    MAX_EXAMPLES,
    AuditReport,
    Example,
    Finding,
    LeverReport,
    examples_of,
    pct,
    plural,
    snippet,
)
from .phrasing import duplicate_rows
from .size import invalid_rows
from .words import norm

BIAS_SHARE = 0.6  # "prefer the longer answer" right in 3 of 5 differing pairs
BIAS_Z = 3.0  # ... and not chance (sign test)
HEAVY_PROMPT_SHARE = 0.05  # one prompt holding 5% of all pairs (and at least HEAVY_PROMPT_MIN)
HEAVY_PROMPT_MIN = 10
_BOTH = "\ue000"  # joins the two answers into one "output" (a private-use character: never text)


def audit_pairs(pairs: Sequence[PairRecord], *, tokenizer=None, template=None,
                max_length: int = 2048, eval_records: Sequence[Record] | None = None,
                skipped: Sequence[Problem] = (),
                progress: Callable[[str], None] | None = None) -> AuditReport:
    """Audit preference pairs (levers "pairs", "length_bias", "contamination"). With a tokenizer,
    lengths are also counted in tokens with the template (default alpaca) and pairs over
    `max_length` are reported, as train would drop them."""
    pairs = list(pairs)
    if not pairs:
        raise InstructTuneError("Nothing to audit: the data has no valid pairs.")
    step = progress or (lambda name: None)
    d = AuditData([p.record("chosen") for p in pairs], list(skipped))
    tokens = None
    if tokenizer is not None:
        from ..data.pair_tokenize import build_pairs

        step("tokenizing with the model's tokenizer")
        tokens = build_pairs(pairs, tokenizer, template, max_length=max_length, cache_dir="none")
    step("pairs")
    levers = {"pairs": pairs_lever(pairs, d, tokens, max_length)}
    step("length bias")
    levers["length_bias"] = length_lever(pairs, tokens)
    if eval_records:
        step("contamination")
        levers["contamination"] = contamination_lever(d, list(eval_records))
    else:
        levers["contamination"] = not_checked()
    return AuditReport(levers, len(pairs))


def pairs_lever(pairs: list[PairRecord], d: AuditData, tokens=None, max_length: int = 2048) -> LeverReport:
    """Duplicate pairs, repeated prompts, contradicting pairs, invalid rows, pairs too long."""
    n = d.n
    both = AuditData([Record((*p.prompt, Message("assistant", p.chosen + _BOTH + p.rejected)),
                             p.source) for p in pairs])
    dup_of = duplicate_rows(both)
    findings = [f for f in (_duplicates(d, dup_of), _repeated_prompts(d), _contradictions(pairs, d),
                            invalid_rows(d) if d.skipped else None,
                            _too_long(tokens, n, max_length) if tokens is not None else None) if f]
    groups = len(d.prompt_groups)
    stats = {"pairs": n, "distinct_prompts": groups, "pairs_per_prompt": round(n / groups, 3),
             "max_pairs_per_prompt": max(map(len, d.prompt_groups.values())),
             "duplicate_pairs": len(dup_of), "skipped_invalid": len(d.skipped),
             **({"pairs_fitting_max_length": len(tokens)} if tokens is not None else {})}
    problems = [f for f in findings if f.severity != "info"]
    verdict = (f"{plural(n, 'pair')} on {plural(groups, 'distinct prompt')} "
               f"({n / groups:.2f} per prompt)"
               + (": " + "; ".join(f.message.split(" (")[0].rstrip(".") for f in problems) + "."
                  if problems else "; no duplicate or contradicting pairs."))
    return LeverReport("pairs", verdict, findings, stats, limits=(
        "Compares text, not meaning: two pairs that say the same in other words are not duplicates, "
        "and whether the chosen answer is really better is not judged (read samples, or eval)."))


def _duplicates(d: AuditData, dup_of: dict[int, int]) -> Finding | None:
    if not dup_of:
        return None
    return Finding(
        "duplicate_pairs", "warning",
        f"{plural(len(dup_of), 'pair repeats', 'pairs repeat')} an earlier pair exactly (prompt, "
        "chosen and rejected).", len(dup_of), d.n,
        "A repeated pair counts twice in the loss, and with --eval-split it can land on both "
        "sides of the split. Remove the copies.",
        examples=examples_of(d.records, sorted(dup_of), pair_of=dup_of),
        rows=[d.records[i].source for i in sorted(dup_of)])


def _repeated_prompts(d: AuditData) -> Finding | None:
    groups = sorted((g for g in d.prompt_groups.values() if len(g) > 1), key=len, reverse=True)
    if not groups:
        return None
    rows = sum(map(len, groups))
    top = len(groups[0])
    heavy = top >= max(HEAVY_PROMPT_MIN, HEAVY_PROMPT_SHARE * d.n)
    examples = examples_of(d.records, [g[0] for g in groups])
    for e, g in zip(examples, groups, strict=False):
        e.text = f"[×{len(g):,}] {e.text}"
    return Finding(
        "repeated_prompts", "warning" if heavy else "info",
        f"{plural(len(groups), 'prompt has', 'prompts have')} more than one pair "
        f"({plural(rows, 'pair')}, {pct(rows / d.n)}); the most repeated has {top:,} "
        f"({pct(top / d.n)} of all pairs).", rows, d.n,
        "Normal when pairs come from ranking several answers to one prompt (4 answers give up to "
        "6 pairs). Each pair counts once, so a prompt with k pairs weighs k times"
        + (f": one prompt holding >= {pct(HEAVY_PROMPT_SHARE)} of the pairs pulls the model "
           "towards it; cap the pairs per prompt." if heavy else ".")
        + " With --eval-split, pairs of one prompt can land in both train and eval: split by "
        "prompt (a separate --eval-data) to measure generalisation.",
        examples=examples, rows=sorted((d.records[i].source for g in groups for i in g),
                                       key=lambda s: (s.path, s.line)),
        stats={"prompts": len(groups), "max_pairs": top})


def _contradictions(pairs: list[PairRecord], d: AuditData) -> Finding | None:
    """Pairs whose reverse (same prompt, chosen and rejected swapped) is also in the file."""
    first: dict[tuple, int] = {}
    for i, (p, key) in enumerate(zip(pairs, d.prompts, strict=True)):
        first.setdefault((key, norm(p.chosen), norm(p.rejected)), i)
    partner = {}
    for i, (p, key) in enumerate(zip(pairs, d.prompts, strict=True)):
        j = first.get((key, norm(p.rejected), norm(p.chosen)))
        if j is not None:
            partner[i] = j
    if not partner:
        return None
    rows = sorted(partner)

    def said(p: PairRecord) -> str:
        return f"chose {snippet(p.chosen, 40)!r} over {snippet(p.rejected, 40)!r}"

    examples = [Example(pairs[i].source, f"{snippet(d.records[i].instruction, 50)}: {said(pairs[i])}",
                        pairs[j].source, said(pairs[j]))
                for i, j in sorted(partner.items()) if i < j][:MAX_EXAMPLES]
    return Finding(
        "contradicting_pairs", "warning",
        f"{plural(len(rows), 'pair is', 'pairs are')} contradicted by another pair: same prompt, "
        "chosen and rejected swapped.", len(rows), d.n,
        "Their gradients cancel, so they cost compute and teach nothing (and cap reward accuracy "
        "at 50% on them). Keep the preference you believe, or drop both.",
        examples=examples, rows=[d.records[i].source for i in rows])


def _too_long(tokens, n: int, max_length: int) -> Finding | None:
    if not tokens.dropped:
        return None
    rows = [Source(p.path, p.line or 0) for p in tokens.dropped]
    return Finding(
        "too_long", "warning",
        f"{plural(len(rows), 'pair does', 'pairs do')} not fit --max-length {max_length:,} tokens "
        f"(prompt + longer answer, {pct(len(rows) / n)}): training drops them.", len(rows), n,
        "Raise --max-length (up to the model's context) or shorten them; a pair is never cut, "
        "since a cut answer would be compared with a whole one.",
        [Example(src, snippet(p.message.split(";")[0]))
         for src, p in zip(rows[:5], tokens.dropped[:5], strict=True)],
        rows)


def length_lever(pairs: list[PairRecord], tokens=None) -> LeverReport:
    """Length bias in words, and in tokens with --model (the flag then uses tokens)."""
    words = length_bias([len(p.chosen.split()) for p in pairs], [len(p.rejected.split()) for p in pairs])
    stats = {"words": _stats(words)}
    judged, unit = words, "words"
    if tokens is not None and len(tokens):
        judged, unit = length_bias([len(p.chosen_ids) for p in tokens],
                                   [len(p.rejected_ids) for p in tokens]), "tokens"
        stats["tokens"] = _stats(judged)
    share, z = judged.longer_when_different, judged.z
    biased = abs(z) >= BIAS_Z and (share >= BIAS_SHARE or share <= 1 - BIAS_SHARE)
    rel = judged.mean_difference / judged.rejected_mean if judged.rejected_mean else 0.0
    some = (f" (the {plural(judged.pairs, 'pair')} that fit --max-length)"
            if judged.pairs < len(pairs) else "")
    measured = (f"the longer answer is the chosen one in {pct(share)} of the pairs whose lengths "
                f"differ{some} (50% = no bias; sign test z = {z:+.1f}); chosen answers average "
                f"{judged.chosen_mean:,.1f} {unit}, rejected {judged.rejected_mean:,.1f} ({rel:+.0%})")
    also = f" In words: {words.describe('words')}." if unit == "tokens" else ""
    if biased:
        longer = share >= BIAS_SHARE
        finding = Finding(
            "length_bias", "warning", f"Chosen answers are {'longer' if longer else 'shorter'}: "
            f"{measured}.{also}", round(judged.chosen_longer * judged.pairs), judged.pairs,
            "DPO raises the chosen answer's summed log-prob against the rejected one's, so a "
            f"model can lower the loss by writing {'longer' if longer else 'shorter'} rather than "
            "better. Balance the set (pairs where the shorter answer wins), or watch the mean "
            "output length in `instruct-tune eval` before and after.", stats=stats[unit])
        verdict = (f"Biased ({unit}): chosen {'longer' if longer else 'shorter'} in {pct(share)} "
                   f"of pairs that differ in length, {rel:+.0%} on average.")
    else:
        # both reasons where both hold: "within chance" alone read as "no sign at all" at z = 2
        why = " and ".join(r for r, holds in (
            (f"under the {pct(BIAS_SHARE)} threshold", 1 - BIAS_SHARE < share < BIAS_SHARE),
            (f"|z| < {BIAS_Z:g}: could be chance", abs(z) < BIAS_Z)) if holds)
        finding = Finding("length_bias", "info", f"No length bias ({why}): {measured}.{also}",
                          round(judged.chosen_longer * judged.pairs), judged.pairs, stats=stats[unit])
        verdict = (f"No length bias ({unit}): chosen longer in {pct(share)} of pairs that differ "
                   f"in length (z = {z:+.1f}).")
    return LeverReport("length_bias", verdict, [finding], stats, limits=(
        "Length only: other systematic differences (format, politeness, a refusal in every "
        "rejected answer) are learned the same way and are not measured."))


def _stats(b: LengthBias) -> dict:
    return {"pairs": b.pairs, "chosen_mean": round(b.chosen_mean, 2),
            "rejected_mean": round(b.rejected_mean, 2), "chosen_longer": round(b.chosen_longer, 4),
            "rejected_longer": round(b.rejected_longer, 4),
            "longer_when_different": round(b.longer_when_different, 4), "z": round(b.z, 2)}
