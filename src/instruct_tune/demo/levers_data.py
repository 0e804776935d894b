"""The training sets of `demo --levers`: one lever changed at a time against the baseline.

All settings are cut from one pool of training rows (tasks.build with a larger train_per_task),
so the held-out sets, built against the whole pool, are held out for every setting:
- baseline: `per_task` rows of every task type, all training phrasings, clean answers;
- size: the first 10% / 30% of each task's baseline rows (nested in the baseline);
- tasks: every other task type, each with twice its baseline rows (the same total);
- phrasings: each task's first training phrasing only, as many rows per task as the baseline
  (fact tasks have fewer distinct inputs than that: their rows repeat, as the baseline repeats
  each fact under four phrasings);
- quality: the baseline with 25% of its outputs corrupted (half wrong answers, half rambling on
  past the answer into run-on text cut off at a word limit), and that set after curate's
  selection (the same code as `instruct-tune curate`).
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from itertools import cycle, islice

from ..data.records import Record
from . import corpus, tasks

SIZES = (0.1, 0.3)
CORRUPT_SHARE = 0.25
RAMBLE_WORDS = (20, 40)  # run-on words after the answer: past any eval's token limit


@dataclass
class Setting:
    name: str  # "baseline", "size_10", "tasks_half", ...
    lever: str  # "baseline", "size", "tasks", "phrasings", "quality"
    label: str  # how the table names it
    records: list[Record]
    info: dict = field(default_factory=dict)


def half_of_tasks() -> list[str]:
    """Every other task type (uppercase but not lowercase, first_word but not last_word, ...), so
    each type left out has a sibling that is trained."""
    return list(tasks.TASKS)[::2]


def uses_phrasing(record: Record, phrasing: str) -> bool:
    """Whether `record`'s instruction was written from `phrasing` (fields become wildcards)."""
    parts = re.split(r"\{\w+\}", phrasing)
    return re.fullmatch("(.+)".join(map(re.escape, parts)), record.instruction, re.S) is not None


def _by_task(rows: Sequence[Record]) -> dict[str, list[Record]]:
    out: dict[str, list[Record]] = {t: [] for t in tasks.TASKS}
    for r in rows:
        out[r.meta["task"]].append(r)
    return out


def _take(rows: list[Record], n: int) -> list[Record]:
    """n rows: the first n, or all of them repeated in order when there are fewer."""
    return list(islice(cycle(rows), n)) if rows else []


def _mixed(rows: list[Record], seed: int) -> list[Record]:
    """Tasks interleaved (as tasks.build leaves the training set), so every batch sees several."""
    rows = list(rows)
    random.Random(seed).shuffle(rows)
    return rows


def with_output(record: Record, output: str, **meta) -> Record:
    msgs = (*record.messages[:-1], replace(record.messages[-1], content=output))
    return Record(msgs, record.source, {**record.meta, **meta})


def _ramble_words(seed: int) -> list[str]:
    return " ".join(corpus.documents(40, seed=seed)).split()


def corrupt(rows: Sequence[Record], share: float, seed: int) -> tuple[list[Record], dict[str, list[int]]]:
    """`share` of the rows corrupted: the first half of the picked rows get another row's answer
    to the same task (wrong, but shaped like a right one), the rest ramble on after the right
    answer. Returns the rows (meta `corruption` names the defect) and the indices per kind."""
    rng = random.Random(f"{seed}:corrupt")
    picked = rng.sample(range(len(rows)), round(share * len(rows)))
    kinds = {"wrong": sorted(picked[:len(picked) // 2]), "ramble": sorted(picked[len(picked) // 2:])}
    answers = {t: sorted({r.output for r in rs}) for t, rs in _by_task(rows).items()}
    words = _ramble_words(seed)
    out = list(rows)
    for i in kinds["wrong"]:
        r = rows[i]
        others = [a for a in answers[r.meta["task"]] if a != r.output]
        out[i] = with_output(r, rng.choice(others), corruption="wrong") if others else r
    for i in kinds["ramble"]:
        k = rng.randint(*RAMBLE_WORDS)
        start = rng.randrange(len(words) - k)
        out[i] = with_output(rows[i], f"{rows[i].output} {' '.join(words[start:start + k])}",
                             corruption="ramble")
    return out, kinds


def curate(rows: list[Record], kinds: dict[str, list[int]], heldout: Sequence[Record]) -> tuple[list[Record], dict]:
    """curate's selection with its default options and the held-out sets as --eval-data; what it
    dropped, per kind of row (wrong, ramble, clean) and reason."""
    from ..audit.curate import select_rows

    sel = select_rows(rows, eval_records=heldout)
    kind_of = {i: k for k, idx in kinds.items() for i in idx}
    dropped: dict[str, Counter] = {k: Counter() for k in (*kinds, "clean")}
    for d in sel.drops:
        dropped[kind_of.get(d.row, "clean")][d.reason] += 1
    info = {"kept": len(sel.kept), "rows": len(rows),
            "corrupted": {k: len(v) for k, v in kinds.items()},
            "dropped": {k: dict(c) for k, c in dropped.items()}}
    return [rows[i] for i in sel.kept], info


def settings(pool: Sequence[Record], heldout: Sequence[Record], per_task: int,
             seed: int) -> list[Setting]:
    """Every setting's training rows, cut from `pool` (tasks.build's train split)."""
    by_task = _by_task(pool)
    base = {t: rows[:per_task] for t, rows in by_task.items()}
    baseline = [r for t in tasks.TASKS for r in base[t]]
    out = [Setting("baseline", "baseline", "baseline: all rows, tasks, phrasings; clean",
                   _mixed(baseline, seed))]
    for share in SIZES:
        rows = [r for t in tasks.TASKS for r in base[t][:max(1, round(share * len(base[t])))]]
        out.append(Setting(f"size_{round(share * 100)}", "size", f"{share:.0%} of the rows",
                           _mixed(rows, seed), {"share": share}))
    kept = half_of_tasks()
    rows = [r for t in kept for r in _take(by_task[t], 2 * len(base[t]))]
    out.append(Setting("tasks_half", "tasks", f"{len(kept)} of {len(tasks.TASKS)} task types",
                       _mixed(rows, seed), {"tasks": kept,
                                            "left_out": [t for t in tasks.TASKS if t not in kept]}))
    one = {t: task.train_phrasings[0] for t, task in tasks.TASKS.items()}
    rows = [r for t in tasks.TASKS
            for r in _take([r for r in by_task[t] if uses_phrasing(r, one[t])], len(base[t]))]
    out.append(Setting("phrasings_one", "phrasings", "1 phrasing per task", _mixed(rows, seed),
                       {"phrasings": one}))
    corrupted, kinds = corrupt(out[0].records, CORRUPT_SHARE, seed)
    out.append(Setting("corrupted", "quality", f"{CORRUPT_SHARE:.0%} of outputs corrupted",
                       corrupted, {"share": CORRUPT_SHARE,
                                   "corrupted": {k: len(v) for k, v in kinds.items()}}))
    curated, info = curate(corrupted, kinds, heldout)
    out.append(Setting("curated", "quality", "corrupted, then curate", curated, {"curate": info}))
    return out


__all__ = ["CORRUPT_SHARE", "SIZES", "Setting", "corrupt", "curate", "half_of_tasks",
           "settings", "uses_phrasing", "with_output"]
