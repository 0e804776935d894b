"""Lever 3, phrasing diversity: are the instructions worded in many ways, or copies of a few?

- duplicate rows (same prompt and output, ignoring case and spacing);
- one instruction text reused for many inputs (the templated-task pattern: fine, but say so);
- near-duplicate instructions: Jaccard >= 0.8 over word bigrams (MinHash LSH candidates, every
  pair then verified exactly);
- ROUGE-L >= 0.7 between instructions, the filter Self-Instruct used to keep its pool varied:
  all pairs for up to 5,000 distinct instructions, otherwise a seeded sample of 1,000 compared
  against all (an estimate with its margin of error, so time stays linear in the set size);
- distinct-n (unique n-grams / all n-grams) over a fixed-size sample, so sets of different sizes
  are comparable.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from .context import AuditData
from .findings import Finding, LeverReport, examples_of, pct, plural
from .neardup import Shingles, near_duplicate_groups
from .rouge import best_partners
from .words import lcs_strings, ngram_hashes, words

NEAR_JACCARD = 0.8
ROUGE_L = 0.7
ROUGE_ALL_PAIRS_MAX = 5_000
ROUGE_SAMPLE = 1_000
DISTINCT_SAMPLE = 1_000
SIMILAR_WARN = 0.10  # a tenth of distinct instructions near-duplicated: phrasing is narrow
REUSE_WARN = 0.5  # half the rows share their instruction text with others


def phrasing_lever(d: AuditData) -> LeverReport:
    n = d.n
    findings: list[Finding] = []
    dup_of = duplicate_rows(d)
    if dup_of:
        findings.append(Finding(
            "duplicate_rows", "warning",
            f"{plural(len(dup_of), 'row repeats', 'rows repeat')} an earlier row exactly "
            "(instruction, input and output).",
            len(dup_of), n, "Duplicates weigh those rows more in training and leak across "
            "train/eval splits. Remove them.",
            examples=examples_of(d.records, dup_of, pair_of=dup_of),
            rows=[d.records[i].source for i in dup_of]))

    reused = [g for g in d.instruction_groups.values() if len(g) > 1]
    reused_rows = sum(len(g) for g in reused)
    if reused:
        biggest = max(reused, key=len)
        heavy = n >= 20 and reused_rows >= REUSE_WARN * n
        most = sorted(reused, key=len, reverse=True)
        examples = examples_of(d.records, [g[0] for g in most])
        for e, g in zip(examples, most, strict=False):
            e.text = f"[×{len(g):,}] {e.text}"
        findings.append(Finding(
            "reused_instructions", "warning" if heavy else "info",
            f"{plural(len(reused), 'instruction text is', 'instruction texts are')} used by more "
            f"than one row ({plural(reused_rows, 'row')}, {pct(reused_rows / n)}); "
            f"{'it' if len(reused) == 1 else 'the most used'} appears {len(biggest):,} times.",
            reused_rows, n,
            "Normal for templated tasks (one instruction, many inputs). But the model sees few "
            "phrasings of those requests: paraphrase some if users will word them differently.",
            examples=examples,
            rows=sorted((d.records[i].source for g in reused for i in g), key=lambda s: s.line),
            stats={"distinct_reused": len(reused), "max_reuse": len(biggest)}))

    distinct = list(d.instruction_groups.values())
    findings.append(_near_duplicates(d, distinct))
    findings.append(_rouge(d, distinct))
    findings.append(_distinct_n(d))
    near, rouge = findings[-3], findings[-2]
    stats = {"distinct_instructions": len(distinct), "duplicate_rows": len(dup_of),
             "reused_instruction_rows": reused_rows,
             "near_duplicate_instructions": near.count, "rouge_l_similar_share": round(rouge.share, 4),
             **findings[-1].stats}
    adjective = ("Varied" if near.share < SIMILAR_WARN and rouge.share < SIMILAR_WARN
                 and reused_rows < REUSE_WARN * n else "Repetitive")
    dups = f"; {plural(len(dup_of), 'exact duplicate row')}" if dup_of else ""
    verdict = (f"{adjective}: {plural(len(distinct), 'distinct instruction')} in "
               f"{plural(n, 'row')}; "
               f"{pct(near.share)} near-duplicated (Jaccard >= {NEAR_JACCARD}), "
               f"{pct(rouge.share)} with a ROUGE-L >= {ROUGE_L} neighbour"
               f"{' (estimated)' if rouge.stats.get('sampled') else ''}{dups}.")
    return LeverReport("phrasing_diversity", verdict, findings, stats, limits=(
        "Word-level similarity only: paraphrases that share few words (semantic duplicates) are "
        "not detected."))


def duplicate_rows(d: AuditData, alive: Sequence[bool] | None = None) -> dict[int, int]:
    """Row -> the first earlier row with the same prompt and output (ignoring case and spacing);
    with `alive`, only rows marked True take part (curate: rows no other check dropped)."""
    first: dict[tuple, int] = {}
    dup_of: dict[int, int] = {}
    for i, key in enumerate(zip(d.prompts, d.outputs, strict=True)):
        if alive is None or alive[i]:
            j = first.setdefault(key, i)
            if j != i:
                dup_of[i] = j
    return dup_of


def near_duplicate_instructions(d: AuditData) -> tuple[list[list[int]], list[tuple]]:
    """Groups of distinct instructions (indices into `d.instruction_groups`) linked by bigram
    Jaccard >= NEAR_JACCARD, and the verified pairs linking them (see neardup.py)."""
    hashes, rows = ngram_hashes(d.instruction_tokens, 2)
    return near_duplicate_groups(Shingles(hashes, rows, len(d.instruction_groups)), NEAR_JACCARD)


def _near_duplicates(d: AuditData, distinct: list[list[int]]) -> Finding:
    comps, pairs = near_duplicate_instructions(d)
    involved = sorted({g for c in comps for g in c})
    partner = {}
    for i, j, _ in sorted(pairs, key=lambda p: -p[2]):
        partner.setdefault(distinct[j][0], distinct[i][0])
        partner.setdefault(distinct[i][0], distinct[j][0])
    share = len(involved) / max(len(distinct), 1)
    message = (f"{plural(len(involved), 'distinct instruction has', 'distinct instructions have')}"
               f" a near-duplicate ({pct(share)} of distinct instructions; Jaccard >= "
               f"{NEAR_JACCARD} over word bigrams), in {plural(len(comps), 'group')}."
               if involved else "No near-duplicate instructions (no two share most of their "
               f"consecutive word pairs: bigram Jaccard >= {NEAR_JACCARD}).")
    return Finding(
        "near_duplicate_instructions", "warning" if share >= SIMILAR_WARN else "info", message,
        len(involved), max(len(distinct), 1),
        "Two instructions are near-duplicates when most of their consecutive word pairs are "
        "shared (bigram Jaccard: shared pairs / all pairs of the two). They add rows without "
        "adding phrasings. Pairs that differ only in a filled-in slot (a number, a name) are one "
        "template: fine, but word it several ways. Otherwise keep one per group or rewrite them."
        if involved else "",
        examples=examples_of(d.records, [distinct[c[0]][0] for c in comps], pair_of=partner),
        rows=sorted((d.records[r].source for g in involved for r in distinct[g]),
                    key=lambda s: s.line),
        stats={"groups": len(comps), "pairs": len(pairs)})


def _rouge(d: AuditData, distinct: list[list[int]]) -> Finding:
    texts = lcs_strings(d.instruction_words)
    m = len(texts)
    sampled = m > ROUGE_ALL_PAIRS_MAX
    queries = (sorted(random.Random(0).sample(range(m), ROUGE_SAMPLE)) if sampled
               else list(range(m)))
    partner = best_partners(texts, queries, ROUGE_L)  # as comparing all pairs, faster (rouge.py)
    hits = sorted(partner)
    share = len(hits) / max(len(queries), 1)
    stats: dict = {"sampled": sampled, "compared": len(queries)}
    note = ""
    if sampled:
        margin = 1.96 * (share * (1 - share) / len(queries)) ** 0.5
        stats["margin_95"] = round(margin, 4)
        note = (f" (estimated from {len(queries):,} sampled instructions compared with all "
                f"{m:,}: ±{pct(margin)})")
    rec_partner = {distinct[i][0]: distinct[j][0] for i, j in partner.items()}
    heavy = share >= SIMILAR_WARN
    return Finding(
        "rouge_l_similar", "warning" if heavy else "info",
        f"{pct(share)} of distinct instructions have another with ROUGE-L >= {ROUGE_L}{note}.",
        round(share * m), max(m, 1),
        "ROUGE-L: the longest run of words two instructions share in order (gaps allowed), as a "
        "share of their lengths; 1.0 is the same words in the same order. Self-Instruct discarded "
        "new instructions with ROUGE-L > 0.7 to any existing one to keep phrasing varied"
        + ("; reword or drop some of these pairs unless the set is templated on purpose." if heavy
           else "; the examples are pairs that filter would remove." if hits else "."),
        examples=examples_of(d.records, list(rec_partner), pair_of=rec_partner),
        rows=sorted((d.records[r].source for i in hits for r in distinct[i]), key=lambda s: s.line),
        stats=stats)


def _distinct_n(d: AuditData) -> Finding:
    idx = list(range(d.n))
    if d.n > DISTINCT_SAMPLE:
        idx = sorted(random.Random(0).sample(idx, DISTINCT_SAMPLE))
    toks = [words(d.records[i].instruction) for i in idx]
    over = plural(len(idx), "sampled row" if d.n > len(idx) else "row")
    dist = {}
    for k in (1, 2, 3):
        grams = [tuple(t[j: j + k]) for t in toks for j in range(len(t) - k + 1)]
        dist[f"distinct_{k}"] = round(len(set(grams)) / len(grams), 4) if grams else 0.0
    return Finding(
        "distinct_n", "info",
        f"distinct-1/2/3 of instructions: {dist['distinct_1']:.2f} / {dist['distinct_2']:.2f} / "
        f"{dist['distinct_3']:.2f} (over {over}).",
        len(idx), max(d.n, 1),
        "Share of unique word n-grams; higher means more varied wording. It falls as more rows "
        f"are counted, so it is measured on (at most) {DISTINCT_SAMPLE:,} rows: compare sets at "
        "the same count.", stats=dist)
