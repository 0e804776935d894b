"""Lever 2, task diversity: which kinds of tasks the set teaches, and whether a few dominate.

Two views, both weighted by rows (a task that fills half the rows is half of what the model sees):
- task types: the leading verb and its object (as in the Self-Instruct analysis; see tasks.py),
  with the entropy of the verb distribution, the effective number of task types (2^entropy: a set
  spread evenly over k verbs has k) and the share of the ten most common verbs. Questions count
  as one type, "question" (why: tasks.py);
- clusters of similar instructions: instructions whose word sets overlap (Jaccard >= 0.5,
  MinHash estimate), grouped around a leader so similarity doesn't chain. Large clusters are
  templates: one kind of request with different slots filled in.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from .context import AuditData
from .findings import Example, Finding, LeverReport, examples_of, pct, plural, snippet
from .neardup import Shingles, leader_clusters
from .tasks import QUESTION, label
from .words import ngram_hashes

CLUSTER_JACCARD = 0.5
STOPWORDS = str.split("a an the of to in on for with and or but is are be this that these those "
                      "it its me my you your i we our as at by from about into than then so such "
                      "can could would should will please given following")
DOMINANT_VERB = 0.5  # one verb in half the rows: a single-task set
MIN_EFFECTIVE = 5  # fewer than 5 effective task types: a few tasks dominate
DOMINANT_CLUSTER = 1 / 3  # one cluster of near-template instructions in a third of the rows
MIN_ROWS_TO_JUDGE = 20  # below this, shares are too noisy to warn about


def entropy_bits(counts: Counter) -> float:
    total = sum(counts.values())
    return -sum(c / total * math.log2(c / total) for c in counts.values() if c) if total else 0.0


def task_diversity_lever(d: AuditData) -> LeverReport:
    n = d.n
    verbs = Counter(v for v, _ in d.tasks)
    pairs = Counter(label(v, o) for v, o in d.tasks)
    known = Counter({v: c for v, c in verbs.items() if v != "(other)"})
    h = entropy_bits(known)
    k = len(known)
    top10 = sum(c for _, c in known.most_common(10))
    stats = {
        "distinct_verbs": k, "entropy_bits": round(h, 3),
        "normalized_entropy": round(h / math.log2(k), 3) if k > 1 else 0.0,
        "effective_task_types": round(2 ** h, 1),
        "top10_share": round(top10 / max(sum(known.values()), 1), 4),
        "unrecognised_share": round(verbs["(other)"] / max(n, 1), 4),
        "question_share": round(verbs[QUESTION] / max(n, 1), 4),
        "top_verbs": [[v, c] for v, c in verbs.most_common(20)],
        "top_verb_objects": [[p, c] for p, c in pairs.most_common(20)],
    }
    first_row = {}
    for i, (v, o) in enumerate(d.tasks):
        first_row.setdefault(label(v, o), i)
    top = ", ".join(f"{v} {pct(c / n)}" for v, c in known.most_common(6))
    kinds = (f"{plural(k - 1, 'leading verb')} plus questions" if QUESTION in known
             else "leading verbs")
    unknown = (f"; no task verb found in {pct(verbs['(other)'] / n)} of rows, left out of these "
               "numbers" if verbs["(other)"] else "")
    top10_note = (f"; the 10 most common cover {pct(stats['top10_share'])} of rows with a task"
                  if k > 10 else "")
    shown = [(p, c) for p, c in pairs.most_common(6) if p != "(other)"][:5]
    findings = [Finding(
        "task_types", "info",
        f"{plural(k, 'task type')} ({kinds}), as varied as {stats['effective_task_types']:g} "
        f"equally common ones{top10_note}{unknown}. Most common: {top}.", k, max(n, 1),
        "'As varied as N equally common ones' is the effective number of task types (2^entropy "
        "of the task mix): a few dominant types pull it far below the count of types. Examples "
        "show the most common verb-object pairs; the verb finder is a heuristic for English "
        "instructions, not a parser, and counts all questions as one type.",
        examples=[Example(d.records[first_row[p]].source,
                          f"[{p} ×{c:,}] {snippet(d.records[first_row[p]].instruction, 80)}")
                  for p, c in shown],
        stats={"distinct_verb_objects": len(pairs)})]
    if verbs["(other)"] > 0.3 * n:
        findings.append(Finding(
            "tasks_unrecognised", "info",
            f"No task verb recognised in {pct(verbs['(other)'] / n)} of instructions; the task "
            "numbers describe only the rest.", verbs["(other)"], n,
            "Expected for non-English data or instructions that are statements or passives.",
            examples=examples_of(d.records, [i for i, t in enumerate(d.tasks) if t[0] == "(other)"]),
            rows=[d.records[i].source for i, t in enumerate(d.tasks) if t[0] == "(other)"]))
    if known and n >= MIN_ROWS_TO_JUDGE:
        verb, count = known.most_common(1)[0]
        if count >= DOMINANT_VERB * n or 2 ** h < MIN_EFFECTIVE:
            findings.append(Finding(
                "task_dominance", "warning",
                f"A few task types dominate: '{verb}' is {pct(count / n)} of rows, and the mix is "
                f"as varied as {2 ** h:.1f} equally common task types.", count, n,
                "Fine when tuning for one task. For a general assistant, add other kinds of tasks: "
                "a model learns the tasks it sees.",
                examples=examples_of(d.records, [i for i, t in enumerate(d.tasks) if t[0] == verb]),
                rows=[d.records[i].source for i, t in enumerate(d.tasks) if t[0] == verb]))
    clusters, cstats = _clusters(d)
    findings += clusters
    stats |= cstats
    breadth = "Broad" if 2 ** h >= 20 else "Moderate" if 2 ** h >= MIN_EFFECTIVE else "Narrow"
    verdict = (f"{breadth}: {plural(k, 'task type')}, as varied as {2 ** h:.0f} equally common "
               f"ones; most common {top}.")
    return LeverReport("task_diversity", verdict, findings, stats, limits=(
        "Task types come from a verb heuristic for English instructions; clusters use word "
        "overlap, so the same task worded with different words is not grouped."))


def _clusters(d: AuditData) -> tuple[list[Finding], dict]:
    """Star clusters over distinct instructions, sized in rows."""
    groups = list(d.instruction_groups.values())  # distinct instruction -> rows
    n = d.n
    if not groups:
        return [], {"clusters": 0}
    hashes, rows = ngram_hashes(d.instruction_tokens, 1)
    content = ~np.isin(hashes, d.vocab.hashes(STOPWORDS))  # cluster on what is asked, not "the"
    sh = Shingles(hashes[content], rows[content], len(groups), seed=1)
    clusters = leader_clusters(sh, CLUSTER_JACCARD, [len(g) for g in groups])
    sized = sorted(((sum(len(groups[m]) for m in c), c) for c in clusters), key=lambda x: -x[0])
    top10 = sum(s for s, _ in sized[:10])
    stats = {"clusters": len(sized), "largest_cluster_rows": sized[0][0] if sized else 0,
             "top10_clusters_share": round(top10 / max(n, 1), 4),
             "cluster_sizes": [s for s, _ in sized[:20]]}
    if not sized:
        return [Finding("instruction_clusters", "info",
                        "No clusters of similar instructions (word overlap >= 50%).", 0, max(n, 1))
                ], stats
    examples = [Example(d.records[groups[c[0]][0]].source,
                        f"[{plural(s, 'row')}, {plural(len(c), 'distinct instruction')}] "
                        f"{snippet(d.records[groups[c[0]][0]].instruction, 80)}")
                for s, c in sized[:5]]
    biggest, biggest_c = sized[0]
    heavy = n >= MIN_ROWS_TO_JUDGE and biggest >= DOMINANT_CLUSTER * n
    rows = [d.records[r].source for m in biggest_c for r in groups[m]]
    hold = ("" if len(sized) == 1 else f", together they hold {pct(top10 / n)} of rows"
            if len(sized) <= 10 else f", the 10 largest hold {pct(top10 / n)} of rows")
    return [Finding(
        "instruction_clusters", "warning" if heavy else "info",
        f"{plural(len(sized), 'cluster')} of similar instructions (word overlap >= 50%, stopwords "
        f"ignored); {'it' if len(sized) == 1 else 'the largest'} has {plural(biggest, 'row')} "
        f"({pct(biggest / n)}){hold}.",
        biggest, n,
        "A large cluster is one request template with different slots filled in; the model will "
        "be good at that template. Add other phrasings and tasks if that is not the goal."
        if heavy else "Each example is a cluster's first instruction and its size. Small "
        "clusters are normal; one holding a large share of rows would be a template.",
        examples=examples, rows=sorted(rows, key=lambda s: s.line))], stats
