"""The demo's instruction data: verifiable tasks, several phrasings each, and two held-out sets.

Every answer is computed from the input (or looked up in the world's facts), so exact match is a
fair score. Three splits, deterministic by seed:
- train: the training phrasings with the training inputs;
- heldout_inputs: the same phrasings with inputs never used in training (does it generalize over
  inputs?);
- heldout_phrasings: phrasings never shown in training, with inputs never used in training (does
  it follow instructions worded in a new way, rather than recognize memorized ones?).
For facts (capitals, opposites, sums) the held-out inputs are facts the model only met during
pretraining, so a right answer shows tuning drew out knowledge the base model already had.
"""

from __future__ import annotations

import itertools
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..data.records import Record, Source
from .world import CAPITALS, NAMES, NOUNS, OPPOSITE_PAIRS, OPPOSITES, SUMS, VERBS, plural, words

SPLITS = ("train", "heldout_inputs", "heldout_phrasings")
NEAR = 0.7  # held-out prompts stay below this word-bigram Jaccard to every training prompt
Fields = dict[str, str]


@dataclass(frozen=True)
class Task:
    """A phrasing is a format string over the input's fields. A phrasing without a placeholder
    carries its input in the record's `input` field instead (the alpaca input block)."""

    name: str
    train_phrasings: tuple[str, ...]
    heldout_phrasings: tuple[str, ...]
    pool: Callable[[random.Random], list[Fields]]  # distinct inputs, in a seeded order
    answer: Callable[[Fields], str]
    heldout_share: float = 0.0  # for finite pools: the share of inputs kept out of training

    def record(self, phrasing: str, fields: Fields, split: str, line: int) -> Record:
        inline = "{" in phrasing
        instruction = phrasing.format(**fields) if inline else phrasing
        return Record.alpaca(instruction, self.answer(fields), "" if inline else fields["x"],
                             source=Source(f"<demo:{split}>", line), task=self.name, split=split)


def _phrases(lo: int, hi: int, vocab: tuple[str, ...] = words(), distinct: bool = False,
             upper: bool = False, n: int = 4000) -> Callable[[random.Random], list[Fields]]:
    """A pool of `n` distinct random word sequences of length lo..hi."""
    def pool(rng: random.Random) -> list[Fields]:
        seen: dict[str, None] = {}
        while len(seen) < n:
            k = rng.randint(lo, hi)
            ws = rng.sample(vocab, k) if distinct else [rng.choice(vocab) for _ in range(k)]
            seen[" ".join(ws)] = None
        return [{"x": s.upper() if upper else s} for s in seen]
    return pool


def _number_sentences(rng: random.Random) -> list[Fields]:
    forms = ("{name} {verb} {n} {things}.", "There are {n} {things} near the {place}.",
             "{name} counted {n} {things} by the {place}.")
    out = {rng.choice(forms).format(name=rng.choice(NAMES), verb=rng.choice(VERBS), n=n,
                                    things=plural(rng.choice(NOUNS)), place=rng.choice(NOUNS)): n
           for n in itertools.islice(itertools.cycle(range(2, 19)), 4000)}
    return [{"x": s, "n": str(n)} for s, n in out.items()]


def _shuffled(groups: list[list[Fields]]) -> Callable[[random.Random], list[Fields]]:
    """A finite pool in seeded order. Inputs in one group stay together (3+4 with 4+3, hot with
    cold), so a held-out fact is not just a trained one turned around."""
    def pool(rng: random.Random) -> list[Fields]:
        return [fields for group in rng.sample(groups, len(groups)) for fields in group]
    return pool


_SUM_GROUPS = [[{"a": str(a), "b": str(b)}] + ([{"a": str(b), "b": str(a)}] if a != b else [])
               for a, b in SUMS if a <= b]


TASKS: dict[str, Task] = {t.name: t for t in (
    Task("uppercase",
         ("Write this phrase in capital letters.", "Convert the text to uppercase.",
          "Rewrite the words below in all caps.", "Make every letter of '{x}' upper case."),
         ("Turn the following text into UPPERCASE.", "Give me these words in capital letters, please."),
         _phrases(2, 5), lambda f: f["x"].upper()),
    Task("lowercase",
         ("Write this phrase in small letters.", "Convert the text to lowercase.",
          "Rewrite the words below with no capital letters.", "Make every letter of '{x}' lower case."),
         ("Turn the following text into lowercase.", "Give me these words in small letters, please."),
         _phrases(2, 5, upper=True), lambda f: f["x"].lower()),
    Task("copy",
         ("Repeat this text exactly.", "Copy the words below.", "Say these words again, just as they are.",
          "Echo the phrase '{x}'."),
         ("Write the same words back to me.", "Repeat the phrase below word for word."),
         _phrases(2, 6), lambda f: f["x"]),
    Task("reverse",
         ("Reverse the order of these words.", "Write the words below from last to first.",
          "List these words backwards.", "Put the words '{x}' in reverse order."),
         ("Read these words from the end to the start.", "Give me the words in reverse, last word first."),
         _phrases(3, 5), lambda f: " ".join(reversed(f["x"].split()))),
    Task("sort",
         ("Sort these words alphabetically.", "Put the words below in alphabetical order.",
          "Arrange these words from a to z.", "Order the words '{x}' alphabetically."),
         ("Sort the following list in a to z order.", "Write these words in dictionary order."),
         _phrases(3, 5, NOUNS, distinct=True), lambda f: " ".join(sorted(f["x"].split()))),
    Task("count",
         ("How many words are in this list?", "Count the words below.",
          "Tell me the number of words in the text.", "Count how many words there are in '{x}'."),
         ("What is the number of words below?", "How many words does this phrase have?"),
         _phrases(2, 8), lambda f: str(len(f["x"].split()))),
    Task("first_word",
         ("What is the first word?", "Give the first word of this text.", "Which word comes first?",
          "Write only the first word of '{x}'."),
         ("Tell me the word that starts this phrase.", "Name the first word below."),
         _phrases(3, 6), lambda f: f["x"].split()[0]),
    Task("last_word",
         ("What is the last word?", "Give the last word of this text.", "Which word comes last?",
          "Write only the last word of '{x}'."),
         ("Tell me the word that ends this phrase.", "Name the last word below."),
         _phrases(3, 6), lambda f: f["x"].split()[-1]),
    Task("find_number",
         ("What number is in this sentence?", "Find the number in the text.",
          "Write the number that appears below.", "Extract the number from the sentence '{x}'"),
         ("Which number does the sentence mention?", "Pick out the number in the text below."),
         _number_sentences, lambda f: f["n"]),
    Task("add",
         ("What is {a} plus {b}?", "Add {a} and {b}.", "Compute {a} + {b}.",
          "What do you get when you add {a} and {b}?"),
         ("What is the sum of {a} and {b}?", "Work out {a} + {b} for me."),
         _shuffled(_SUM_GROUPS),
         lambda f: str(SUMS[int(f["a"]), int(f["b"])]), heldout_share=0.3),
    Task("capital",
         ("What is the capital of {x}?", "Name the capital city of {x}.",
          "Which city is the capital of {x}?", "Tell me the capital of {x}."),
         ("{x} has a capital city. What is it?", "What city is the capital of the country {x}?"),
         _shuffled([[{"x": c}] for c in CAPITALS]), lambda f: CAPITALS[f["x"]], heldout_share=0.3),
    Task("opposite",
         ("What is the opposite of {x}?", "Give the opposite of the word {x}.",
          "Name a word that means the opposite of {x}.", "Tell me the opposite of {x}."),
         ("Which word is the opposite of {x}?", "The word {x} is the opposite of which word?"),
         _shuffled([[{"x": a}, {"x": b}] for a, b in OPPOSITE_PAIRS]), lambda f: OPPOSITES[f["x"]], heldout_share=0.3),
)}


def prompt_bigrams(instruction: str, input: str = "") -> frozenset[tuple[str, str]]:
    """Word bigrams of a prompt: what near-duplicate checks (the audit's too) compare."""
    words = re.findall(r"\w+", f"{instruction} {input}".lower())
    return frozenset(zip(words, words[1:], strict=False))


def jaccard(a: frozenset, b: frozenset) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def _prompt(task: Task, phrasing: str, fields: Fields) -> frozenset:
    inline = "{" in phrasing
    return prompt_bigrams(phrasing.format(**fields) if inline else phrasing,
                          "" if inline else fields["x"])


def _held_out(task: Task, candidates: list[Fields], phrasings: tuple[str, ...], n: int,
              train: list[frozenset]) -> list[tuple[Task, str, Fields]]:
    """Up to n held-out rows whose prompt is not a near copy of any training prompt: "what is 3
    plus 1" differs from a trained "what is 3 plus 8" by one word, which would make a held-out
    row look memorizable (and the audit rightly flags it as contamination)."""
    rows: list[tuple[Task, str, Fields]] = []
    for fields in candidates:
        for k in range(len(phrasings)):  # rotate phrasings so each is used about equally
            phrasing = phrasings[(len(rows) + k) % len(phrasings)]
            prompt = _prompt(task, phrasing, fields)
            if all(jaccard(prompt, t) < NEAR for t in train):
                rows.append((task, phrasing, fields))
                break
        if len(rows) == n:
            break
    return rows


def build(seed: int = 0, train_per_task: int = 300, eval_per_task: int = 10) -> dict[str, list[Record]]:
    """The three splits. Finite pools (facts, sums) give fewer training rows than asked when
    there are not enough distinct (phrasing, input) pairs; rows are never repeated."""
    chosen: dict[str, list[tuple[Task, str, Fields]]] = {s: [] for s in SPLITS}
    for task in TASKS.values():
        rng = random.Random(f"{seed}:{task.name}")
        pool = task.pool(rng)
        n_held = round(len(pool) * task.heldout_share) if task.heldout_share else 4 * eval_per_task
        held, train = pool[:n_held], pool[n_held:]
        pairs = [(p, f) for f in train[:train_per_task] for p in task.train_phrasings]
        rows = [(task, p, f) for p, f in rng.sample(pairs, min(train_per_task, len(pairs)))]
        chosen["train"] += rows
        train_prompts = [_prompt(task, p, f) for _, p, f in rows]
        for split, phrasings in (("heldout_inputs", task.train_phrasings),
                                 ("heldout_phrasings", task.heldout_phrasings)):
            candidates = rng.sample(held, len(held))
            chosen[split] += _held_out(task, candidates, phrasings, eval_per_task, train_prompts)
    random.Random(seed).shuffle(chosen["train"])  # mix tasks so every batch sees several
    return {split: [task.record(p, f, split, line) for line, (task, p, f) in enumerate(rows, 1)]
            for split, rows in chosen.items()}


def to_row(record: Record) -> dict:
    return {"instruction": record.instruction, "input": record.input, "output": record.output,
            **record.meta}


def write_jsonl(records: list[Record], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for rec in records:
            f.write(json.dumps(to_row(rec)) + "\n")
    return path
