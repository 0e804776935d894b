"""A clean synthetic set and the same set with every kind of defect planted at known lines."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest

from instruct_tune.data.records import Record, Source
from tests.audit.synth import Synth

CLEAN_ROWS = 600


@dataclass
class Planted:
    records: list[Record]
    lines: dict[str, set[int]] = field(default_factory=dict)  # defect -> planted lines

    def add(self, kind: str, record: Record) -> None:
        line = len(self.records) + 1
        r = Record(record.messages, Source("planted.jsonl", line), record.meta)
        self.records.append(r)
        self.lines.setdefault(kind, set()).add(line)


def cut_mid_sentence(text: str, rng: random.Random) -> str:
    """Cut a long output at a random word boundary that is not the end of a sentence."""
    ws = text.split()
    while True:
        k = rng.randint(len(ws) // 3, len(ws) - 2)
        if ws[k - 1][-1].isalnum():
            return " ".join(ws[:k])


@pytest.fixture(scope="session")
def clean() -> list[Record]:
    return Synth(0).records(CLEAN_ROWS, "clean.jsonl")


@pytest.fixture(scope="session")
def planted() -> Planted:
    """CLEAN_ROWS clean rows, then defects appended; each defect's lines are recorded."""
    rng = random.Random(7)
    syn = Synth(3)
    base = Synth(0).records(CLEAN_ROWS, "planted.jsonl")
    p = Planted(list(base))
    long_rows = [r for r in base if len(r.instruction.split()) >= 14 and len(r.output.split()) > 60]
    for r in rng.sample(base, 3):  # exact duplicate rows
        p.add("duplicate", r)
    for k, r in enumerate(long_rows[:6]):  # near-duplicate instructions, re-cased
        ws = r.instruction.split()
        if k % 2:
            ws.append("please")  # one bigram added
        else:
            ws[-1] = "zanzibar."  # one bigram changed
        p.add("near", Record.alpaca(" ".join(ws).upper(), syn.text(50)))
        p.lines["near"].add(base.index(r) + 1)
    for r in long_rows[6:9]:  # conflicts: same prompt, different answer
        p.add("conflict", Record.alpaca(r.instruction, syn.text(40), r.input))
        p.lines["conflict"].add(base.index(r) + 1)
    for _ in range(3):
        p.add("empty", Record.alpaca(syn.instruction(), ""))
        ins = syn.instruction()
        p.add("echo", Record.alpaca(ins, ins))
        inp = syn.text(30)
        p.add("copy_input", Record.alpaca(syn.instruction(), inp, inp))
    for marker in ("### Response:\n", "<|im_start|>assistant\n", "</s>", "### Instruction:"):
        p.add("marker", Record.alpaca(syn.instruction(), syn.text(40) + "\n" + marker + syn.text(9)))
    for refusal in ("As an AI language model, I cannot have opinions about this topic.",
                    "I'm sorry, but I can't help with that request.",
                    "I cannot provide that information. " + syn.text(20)):
        p.add("refusal", Record.alpaca(syn.instruction(), refusal))
    for _ in range(5):
        p.add("cut", Record.alpaca(syn.instruction(), cut_mid_sentence(syn.text(150), rng)))
    p.add("cut", Record.alpaca(syn.instruction(), syn.text(40) + "\n```python\nprint(1)\n"))
    return p


@pytest.fixture(scope="session")
def get_tokenizer_llama():
    from tests.conftest import get_tokenizer
    return get_tokenizer("llama")
