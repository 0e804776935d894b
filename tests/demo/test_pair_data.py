"""The demo's preference pairs: one per generated row, chosen = the right answer, rejected = the
model's own wrong answer where it erred, else a rambling or corrupted right answer; the pair file
is a valid alpaca-style preference file (load_pairs reads back what the stage evaluates)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from instruct_tune.data.pairs import load_pairs
from instruct_tune.demo.pair_data import KINDS, make_pairs, pair_records, prompts, write_rows
from instruct_tune.demo.tasks import TASKS, build

WORD = st.sampled_from(["red", "cat", "sun", "Paris", "7", "12", "dog", "blue"])
ANSWER = st.lists(WORD, min_size=1, max_size=5).map(" ".join)
ROW = st.fixed_dictionaries({
    "instruction": st.sampled_from(["Copy the words below.", "What is 3 plus 4?"]),
    "input": st.sampled_from(["", "red cat"]),
    "task": st.sampled_from(["copy", "add", "capital"]),
    "reference": ANSWER,
    "output": st.one_of(ANSWER, st.just(""), ANSWER.map(lambda a: f" {a} ")),
    "stopped": st.booleans(),
})


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(ROW, min_size=1, max_size=12), seed=st.integers(0, 5))
def test_one_pair_per_row_and_rejected_is_what_the_row_says(rows, seed):
    pairs = make_pairs(rows, seed, "train")
    assert len(pairs) == len(rows)
    for row, pair in zip(rows, pairs, strict=True):
        right, own = row["reference"].strip(), row["output"].strip()
        assert pair["chosen"] == right
        assert (pair["instruction"], pair["input"], pair["task"]) == \
            (row["instruction"], row["input"], row["task"])
        assert pair["kind"] in KINDS
        assert pair["rejected"].strip() != pair["chosen"]  # load_pairs refuses equal answers
        if own and own != right:  # wrong: on-policy, its own answer
            assert pair["rejected"] == own
            assert pair["kind"] == ("own_wrong" if row["stopped"] else "own_no_stop")
        elif pair["kind"] == "ramble":  # the right answer, then it goes on
            assert pair["rejected"].startswith(right) and len(pair["rejected"]) > len(right)
        else:
            assert pair["kind"] == "corrupt"
            ws, bad = right.split(), pair["rejected"].split()
            if len(ws) >= 2:  # two words swapped or one dropped
                assert sorted(bad) == sorted(ws) or len(bad) == len(ws) - 1


def test_pairs_are_seeded():
    rows = [{"instruction": "Copy.", "input": "a b c", "task": "copy", "reference": "a b c",
             "output": "a b c", "stopped": True}] * 20
    assert make_pairs(rows, 1, "train") == make_pairs(rows, 1, "train")
    assert make_pairs(rows, 1, "train") != make_pairs(rows, 2, "train")
    assert {p["kind"] for p in make_pairs(rows, 1, "train")} == {"ramble", "corrupt"}


def test_pair_file_reads_back_as_the_records_evaluated(tmp_path):
    splits = build(seed=0, train_per_task=20, eval_per_task=2)
    asked = prompts(splits, per_task=5, seed=0)
    assert len(asked) == 5 * len(TASKS)
    assert len({r.meta["task"] for r in asked}) == len(TASKS)
    held = {(r.instruction, r.input) for name, rs in splits.items() if name != "train" for r in rs}
    assert not held & {(r.instruction, r.input) for r in asked}  # the held-out sets stay held out
    rng = random.Random(0)
    rows = [{"instruction": r.instruction, "input": r.input, "task": r.meta["task"],
             "reference": r.output, "stopped": rng.random() < 0.5,
             "output": r.output if rng.random() < 0.5 else r.output + " extra"} for r in asked]
    pairs = make_pairs(rows, 0, "train")
    path = write_rows(pairs, tmp_path / "pairs.jsonl")
    loaded = load_pairs(path)
    assert loaded.format == "alpaca"
    ours = pair_records(pairs, path)
    assert [(p.prompt, p.chosen, p.rejected, str(p.source)) for p in loaded.records] == \
        [(p.prompt, p.chosen, p.rejected, str(p.source)) for p in ours]
    assert [p.meta["task"] for p in loaded.records] == [p.meta["task"] for p in ours]
