"""The demo's data: held-out sets really are held out, answers are right, everything is seeded,
and the pretraining corpus holds the facts and words the tasks ask about (and no instructions)."""

from __future__ import annotations

import json
import re

import pytest

from instruct_tune.demo import corpus, tasks, world
from instruct_tune.demo.tasks import SPLITS, TASKS, build


@pytest.fixture(scope="module")
def splits():
    return build(seed=0, train_per_task=200, eval_per_task=8)


def _phrasing_of(task: str, instruction: str) -> str:
    """Which phrasing produced this instruction (inline phrasings are matched as patterns)."""
    t = TASKS[task]
    for p in t.train_phrasings + t.heldout_phrasings:
        pattern = re.escape(p)
        for name in ("x", "a", "b"):
            pattern = pattern.replace(re.escape("{" + name + "}"), "(.+)")
        if re.fullmatch(pattern, instruction):
            return p
    raise AssertionError(f"{instruction!r} matches no phrasing of {task}")


def _question(rec) -> tuple[str, str]:
    """The task's input, whether it sits in the input field or inside the instruction."""
    if rec.input:
        return rec.meta["task"], rec.input
    phrasing = _phrasing_of(rec.meta["task"], rec.instruction)
    pattern = re.escape(phrasing)
    for name in ("x", "a", "b"):
        pattern = pattern.replace(re.escape("{" + name + "}"), "(.+)")
    return rec.meta["task"], " ".join(re.fullmatch(pattern, rec.instruction).groups())


def test_at_least_six_tasks_and_all_present_in_every_split(splits):
    assert len(TASKS) >= 6
    for name in SPLITS:
        assert {r.meta["task"] for r in splits[name]} == set(TASKS), name
        assert all(r.meta["split"] == name for r in splits[name])


def test_heldout_phrasings_never_appear_in_training(splits):
    train_phrasings = {(r.meta["task"], _phrasing_of(r.meta["task"], r.instruction))
                       for r in splits["train"]}
    for rec in splits["heldout_phrasings"]:
        key = (rec.meta["task"], _phrasing_of(rec.meta["task"], rec.instruction))
        assert key not in train_phrasings, rec
        assert key[1] in TASKS[key[0]].heldout_phrasings
    # and every training phrasing of a task is used, so heldout_inputs tests seen phrasings
    for task in TASKS.values():
        used = {p for t, p in train_phrasings if t == task.name}
        assert used == set(task.train_phrasings), task.name


def test_heldout_inputs_never_appear_in_training(splits):
    train_inputs = {_question(r) for r in splits["train"]}
    for name in ("heldout_inputs", "heldout_phrasings"):
        for rec in splits[name]:
            assert _question(rec) not in train_inputs, (name, rec)
    seen = {_phrasing_of(r.meta["task"], r.instruction) for r in splits["heldout_inputs"]}
    assert seen <= {p for t in TASKS.values() for p in t.train_phrasings}


def test_no_training_row_is_repeated(splits):
    pairs = [(r.instruction, r.input) for r in splits["train"]]
    assert len(pairs) == len(set(pairs))


def _expected(task: str, x: str) -> str:
    """An independent statement of each task, from the question alone."""
    words = x.split()
    return {
        "uppercase": lambda: x.upper(), "lowercase": lambda: x.lower(), "copy": lambda: x,
        "reverse": lambda: " ".join(words[::-1]), "sort": lambda: " ".join(sorted(words)),
        "count": lambda: str(len(words)), "first_word": lambda: words[0],
        "last_word": lambda: words[-1],
        "find_number": lambda: re.search(r"\d+", x).group(),
        "add": lambda: str(int(words[0]) + int(words[1])),
        "capital": lambda: world.CAPITALS[x], "opposite": lambda: world.OPPOSITES[x],
    }[task]()


def test_every_answer_is_right(splits):
    for name in SPLITS:
        for rec in splits[name]:
            task, x = _question(rec)
            assert rec.output == _expected(task, x), rec
            assert rec.output.strip() == rec.output and rec.output


def test_deterministic_by_seed():
    def rows(seed):
        return [json.dumps(tasks.to_row(r)) for s in build(seed, 50, 4).values() for r in s]

    assert rows(3) == rows(3)
    assert rows(3) != rows(4)
    assert list(corpus.documents(5, seed=1)) == list(corpus.documents(5, seed=1))
    assert list(corpus.documents(5, seed=1)) != list(corpus.documents(5, seed=2))


def test_write_jsonl_loads_back_with_task_and_split(tmp_path, splits):
    from instruct_tune.data.load import load_records

    path = tasks.write_jsonl(splits["heldout_phrasings"], tmp_path / "h.jsonl")
    loaded = load_records(path)
    assert [(r.instruction, r.input, r.output) for r in loaded] == \
        [(r.instruction, r.input, r.output) for r in splits["heldout_phrasings"]]
    assert [r.meta for r in loaded] == [r.meta for r in splits["heldout_phrasings"]]


def test_corpus_states_every_fact_and_has_no_instruction_format():
    text = "\n".join(corpus.documents(1500, seed=0))
    for country, city in world.CAPITALS.items():
        assert f"capital of {country}" in text and city in text, country
    for a, b in world.OPPOSITE_PAIRS:
        assert re.search(rf"\b({a}|{b})\b.*opposite|opposite of ({a}|{b})\b", text, re.I), a
    for w in world.words():
        assert re.search(rf"\b{w}\b", text) and re.search(rf"\b{w.upper()}\b", text), w
    for marker in ("###", "Instruction", "Response:", "<|im_start|>", "?"):
        assert marker not in text


def test_the_audit_finds_no_contamination_or_errors(splits):
    """Held-out rows are not near copies of training rows (as the audit measures it), and the
    training set has no error-level finding."""
    from instruct_tune.audit.report import audit

    report = audit(splits["train"], eval_records=splits["heldout_inputs"] + splits["heldout_phrasings"])
    assert report["contamination"].checked and not report["contamination"].findings, \
        [f.to_dict() for f in report["contamination"].findings]
    assert not report.errors, [f.message for f in report.errors]
