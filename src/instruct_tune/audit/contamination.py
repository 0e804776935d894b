"""Lever 5, contamination: eval rows that the training data already contains.

Three tests, strongest first; each eval row is reported under the first one it meets, with the
training line it matched:
- exact prompt: the same instruction and input (ignoring case and spacing) is a training row;
- near prompt: Jaccard >= 0.8 over word bigrams of instruction + input (MinHash LSH candidates,
  verified exactly);
- 13-gram overlap: some 13 consecutive words of the eval row (prompt or answer) appear in a
  training row, the test GPT-3 and later reports used. Eval rows under 13 words can only be
  caught by the first two tests.
The first two make an eval score meaningless (error); a shared 13-gram can be a quotation or
boilerplate, so it is a warning to look at.
"""

from __future__ import annotations

import numpy as np

from ..data.records import Record
from .context import AuditData, prompt_key
from .findings import Example, Finding, LeverReport, pct, plural, snippet
from .neardup import Shingles, matching_pairs
from .words import Tokens, ngram_hashes, words

NEAR_JACCARD = 0.8
NGRAM = 13


def _prompt(r: Record) -> str:
    return f"{r.instruction}\n{r.input}"


def _full(r: Record) -> str:
    return f"{r.instruction}\n{r.input}\n{r.output}"


def _members(big: np.ndarray, small: np.ndarray) -> np.ndarray:
    """np.isin(big, small) for millions of training hashes against a small eval set, without
    sorting the big side: a 2^24-bit table on the low bits rules out almost everything, and only
    the rest is looked up exactly."""
    table = np.zeros(1 << 24, dtype=bool)
    table[(small & np.uint64(0xFFFFFF)).astype(np.int64)] = True
    out = table[(big & np.uint64(0xFFFFFF)).astype(np.int64)]
    cand = np.nonzero(out)[0]
    ref = np.unique(small)
    pos = np.minimum(np.searchsorted(ref, big[cand]), len(ref) - 1)
    out[cand] = ref[pos] == big[cand]
    return out


def not_checked() -> LeverReport:
    return LeverReport("contamination", "Not checked: pass --eval-data to check an eval set "
                       "against the training data.", checked=False)


def prompt_matches(d: AuditData, eval_records: list[Record]) -> list[tuple[int, int, str, float]]:
    """Every (eval row, training row, kind, Jaccard) whose prompts are the same ("exact",
    ignoring case and spacing) or near-duplicates ("near": bigram Jaccard >= NEAR_JACCARD over
    instruction + input); exact pairs first, then near pairs by eval row, most similar first.
    The audit reports each eval row's first pair; curate drops every training row in one."""
    out = [(e, t, "exact", 1.0) for e, r in enumerate(eval_records)
           for t in d.prompt_groups.get(prompt_key(r), ())]
    exact = {(e, t) for e, t, _, _ in out}
    ev_tok = Tokens.of([_prompt(r) for r in eval_records], d.vocab)
    ins, inp, _ = d.raw
    tr_tok = Tokens.of([f"{a}\n{b}" for a, b in zip(ins, inp, strict=True)], d.vocab)
    ev_sh = Shingles(*ngram_hashes(ev_tok, 2), len(eval_records), seed=2)
    tr_sh = Shingles(*ngram_hashes(tr_tok, 2), d.n, seed=2)
    near = [(e, t, "near", jac) for e, t, jac in matching_pairs(ev_sh, tr_sh, NEAR_JACCARD)
            if (e, t) not in exact]
    return out + sorted(near, key=lambda p: (p[0], -p[3], p[1]))


def contamination_lever(d: AuditData, eval_records: list[Record]) -> LeverReport:
    m = len(eval_records)
    match: dict[int, tuple[str, int, str]] = {}  # eval row -> (kind, train row, detail)
    for e, t, kind, jac in prompt_matches(d, eval_records):
        if e not in match:
            match[e] = (kind, t, "same instruction and input" if kind == "exact" else
                        f"prompt Jaccard {jac:.2f}")

    # 13-gram overlap over the whole row: hash the eval n-grams, then scan training in one pass.
    ev_h, ev_rows = ngram_hashes(Tokens.of([_full(r) for r in eval_records], None), NGRAM,
                                 whole_if_shorter=False)
    short = int(np.sum(np.bincount(ev_rows, minlength=m) == 0)) if m else 0
    if len(ev_h):
        full = [f"{a}\n{b}\n{c}" for a, b, c in zip(*d.raw, strict=True)]
        tr_h, tr_rows = ngram_hashes(Tokens.of(full, None), NGRAM, whole_if_shorter=False)
        hit = _members(tr_h, ev_h)
        first_train: dict[int, int] = {}
        for h, t in zip(tr_h[hit].tolist(), tr_rows[hit].tolist(), strict=True):
            first_train.setdefault(h, t)
        shared = np.isin(ev_h, np.fromiter(first_train, dtype=np.uint64, count=len(first_train)))
        per_row = np.bincount(ev_rows[shared], minlength=m)
        totals = np.bincount(ev_rows, minlength=m)
        row_start = np.searchsorted(ev_rows, np.arange(m))
        for k in np.nonzero(shared)[0].tolist():
            e = int(ev_rows[k])
            if e not in match:
                off = k - int(row_start[e])  # window offset within the row's words
                gram = " ".join(words(_full(eval_records[e]))[off: off + NGRAM])
                match[e] = ("ngram", first_train[int(ev_h[k])],
                            f"{per_row[e]:,} of its {plural(int(totals[e]), '13-word window')} "
                            f"found in training, e.g. '{gram}'")

    findings = []
    has, shares = ("eval row has", "eval rows have"), ("eval row shares", "eval rows share")
    kinds = [("exact", "error", "contaminated_exact", has,
              "the same instruction and input as a training row ({share})."),
             ("near", "error", "contaminated_near", has,
              "a near-duplicate prompt in training ({share}; bigram Jaccard >= 0.8: most "
              "consecutive word pairs shared)."),
             ("ngram", "warning", "contaminated_ngram", shares,
              "a 13-word sequence with a training row ({share}).")]
    for kind, severity, code, subject, message in kinds:
        rows = sorted(e for e, v in match.items() if v[0] == kind)
        if not rows:
            continue
        text = f"{plural(len(rows), *subject)} {message.format(share=pct(len(rows) / m))}"
        findings.append(Finding(
            code, severity, text, len(rows), m,
            "Scores on these rows measure memory, not skill. Remove them from the eval set (or "
            "from training)." if severity == "error" else
            "Look at the pairs: a shared quotation or boilerplate is harmless, a shared answer is not.",
            examples=[Example(eval_records[e].source,
                              f"{snippet(eval_records[e].instruction, 70)} ({match[e][2]})",
                              d.records[match[e][1]].source,
                              snippet(d.records[match[e][1]].instruction, 70)) for e in rows[:5]],
            rows=[eval_records[e].source for e in rows]))
    stats = {"eval_rows": m, "contaminated": len(match),
             **{k: sum(v[0] == k for v in match.values()) for k in ("exact", "near", "ngram")},
             "eval_rows_under_13_words": short}
    verdict = (f"Clean: no eval row found in training ({plural(m, 'eval row')} checked for an "
               "exact or near-duplicate prompt and for a shared 13-word sequence)."
               if not match else
               f"{len(match):,} of {plural(m, 'eval row')} ({pct(len(match) / m)}) found in "
               "training: " + ", ".join(f"{stats[k]:,} {how}" for k, how in (
                   ("exact", "with the same prompt"), ("near", "with a near-duplicate prompt"),
                   ("ngram", "sharing a 13-word sequence")) if stats[k]) + ".")
    return LeverReport("contamination", verdict, findings, stats, limits=(
        "Finds textual overlap only: a paraphrased or translated copy of an eval item is not "
        "detected."))
