"""The demo's preference pairs, built from the demo's own tasks and the supervised model's answers.

Chosen is always the right answer. Rejected is the model's own greedy answer where it is wrong
(on-policy: the mistakes it actually makes), else, where it was right, the right answer rambling
on (an answer that does not stop) or corrupted (a near miss). The pair file is an alpaca-style
preference file (`load_pairs` reads it back as the records the stage evaluates).
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path

from ..data.records import Message, Record
from . import tasks

KINDS = ("own_wrong", "own_no_stop", "ramble", "corrupt")  # what a pair's rejected answer is


def prompts(splits: dict[str, list[Record]], per_task: int, seed: int) -> list[Record]:
    """`per_task` prompts per task for the supervised model to answer: training phrasings with
    inputs it was not tuned on, none of them a held-out prompt or near one (so the held-out sets
    stay held out; checked against every phrasing of an input, not against how `tasks.build`
    split the pools). A task with too few unused inputs (sums, capitals, opposites) is topped up
    with its training prompts."""
    seen = {(r.instruction, r.input) for r in splits["train"]}
    held = {(r.instruction, r.input) for name, rs in splits.items() if name != "train" for r in rs}
    near: dict[str, list[frozenset]] = defaultdict(list)
    for name, rs in splits.items():
        if name != "train":
            for r in rs:
                near[r.meta["task"]].append(tasks.prompt_bigrams(r.instruction, r.input))
    out: list[Record] = []
    for task in tasks.TASKS.values():
        rng = random.Random(f"{seed}:prefer:{task.name}")
        mine: list[Record] = []
        for fields in task.pool(rng):
            every = [task.record(p, fields, "prefer", 0)
                     for p in task.train_phrasings + task.heldout_phrasings]
            if any((r.instruction, r.input) in held or (r.instruction, r.input) in seen
                   for r in every):
                continue  # a held-out or trained input, whatever the phrasing
            rec = task.record(rng.choice(task.train_phrasings), fields, "prefer", len(out) + 1)
            bigrams = tasks.prompt_bigrams(rec.instruction, rec.input)
            if any(tasks.jaccard(bigrams, h) >= tasks.NEAR for h in near[task.name]):
                continue
            mine.append(rec)
            if len(mine) == per_task:
                break
        if len(mine) < per_task:  # too few new inputs: top up with training prompts
            pool = [r for r in splits["train"] if r.meta["task"] == task.name]
            mine += rng.sample(pool, min(per_task - len(mine), len(pool)))
        out += mine
    return out


def _ramble(answer: str, fillers: list[str], rng: random.Random) -> str:
    """The right answer, then more words: what a model that does not stop writes."""
    more = " ".join(rng.choice(fillers) for _ in range(rng.randint(2, 4)))
    return f"{answer}{rng.choice((' ', chr(10)))}{more}"


def _corrupt(answer: str, others: list[str], rng: random.Random) -> str | None:
    """A near miss: two words swapped or one dropped; a number off by one or two (a wrong count
    or sum); another one-word answer of the same task (a wrong capital). None when none differs."""
    ws = answer.split()
    if len(ws) >= 2:
        i = rng.randrange(len(ws) - 1)
        j = next((k for k in range(i + 1, len(ws)) if ws[k] != ws[i]), None)
        if j is not None and rng.random() < 0.5:
            ws[i], ws[j] = ws[j], ws[i]
        else:
            del ws[rng.randrange(len(ws))]
        return " ".join(ws)
    if answer.isdigit():
        n = int(answer)
        return str(rng.choice([m for m in (n - 2, n - 1, n + 1, n + 2) if m >= 0]))
    wrong = [o for o in others if o.strip() != answer.strip()]
    return rng.choice(wrong) if wrong else None


def make_pairs(rows: list[dict], seed: int, split: str) -> list[dict]:
    """A pair per generated row (evaluate()'s rows: instruction, input, reference, output,
    stopped, task): rejected = the model's own greedy answer where it is wrong, else (it was
    right) the right answer rambling on or corrupted, at random."""
    rng = random.Random(f"{seed}:pairs:{split}")
    answers: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        answers[row["task"]].append(row["reference"])
    fillers = [w for row in rows for w in row["reference"].split()]
    pairs = []
    for row in rows:
        right = row["reference"].strip()
        corrupt = _corrupt(right, answers[row["task"]], rng)
        own = row["output"].strip()
        if own and own != right:
            rejected, kind = own, "own_wrong" if row["stopped"] else "own_no_stop"
        elif corrupt and rng.random() < 0.5:
            rejected, kind = corrupt, "corrupt"
        else:
            rejected, kind = _ramble(right, fillers, rng), "ramble"
        pairs.append({"instruction": row["instruction"], "input": row["input"], "chosen": right,
                      "rejected": rejected, "task": row["task"], "kind": kind, "split": split})
    return pairs


def write_rows(rows: list[dict], path: Path) -> Path:
    """One JSON object per line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def pair_records(pairs: list[dict], path: Path, first_line: int = 1):
    """The pairs as PairRecords (what load_pairs reads from `path`, where they start at
    `first_line`), for evaluate_pairs."""
    from ..data.pairs import PairRecord
    from ..data.records import Source

    return [PairRecord((Message("user", p["instruction"], p["input"]),), p["chosen"], p["rejected"],
                       Source(str(path), line), {"task": p["task"], "kind": p["kind"]})
            for line, p in enumerate(pairs, first_line)]


def write_chosen(pairs: list[dict], path: Path) -> Path:
    """The pairs' chosen answers as supervised rows (instruction, input, output, task): the
    control run, supervised tuning continued on exactly the answers DPO is told to prefer."""
    rows = [{"instruction": p["instruction"], "input": p["input"], "output": p["chosen"],
             "task": p["task"]} for p in pairs]
    return write_rows(rows, path)


__all__ = ["KINDS", "make_pairs", "pair_records", "prompts", "write_chosen", "write_rows"]
