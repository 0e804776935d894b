"""Eval rows planted into training are found, each with the training line it came from."""

from __future__ import annotations

import pytest

from instruct_tune.audit.report import audit
from instruct_tune.data.records import Record, Source
from tests.audit.synth import Synth


@pytest.fixture(scope="module")
def case():
    train = Synth(0).records(400, "train.jsonl")
    fresh = Synth(5).records(60, "eval.jsonl")
    ev: list[Record] = []
    expect: dict[str, dict[int, int]] = {"exact": {}, "near": {}, "ngram": {}}  # eval -> train line

    def add(kind, rec, train_line):
        line = len(ev) + 1
        ev.append(Record(rec.messages, Source("eval.jsonl", line)))
        if kind:
            expect[kind][line] = train_line

    for r in fresh[:30]:
        add(None, r, 0)
    for t in train[10:15]:  # exact prompt, different casing and spacing, different answer
        add("exact", Record.alpaca("  " + t.instruction.lower(), "something else", t.input),
            t.source.line)
    for t in [r for r in train if len(r.instruction.split()) >= 12][:5]:  # one word appended
        add("near", Record.alpaca(t.instruction + " thanks", "an answer", t.input), t.source.line)
    for k, t in enumerate(train[100:105]):  # a 20-word stretch of a training answer, new prompt
        passage = " ".join(t.output.split()[5:25])
        add("ngram", Record.alpaca(fresh[30 + k].instruction, f"Here: {passage} ok"),
            t.source.line)
    return train, ev, expect


@pytest.fixture(scope="module")
def report(case):
    train, ev, _ = case
    return audit(train, eval_records=ev)


@pytest.mark.parametrize("kind, code, severity", [
    ("exact", "contaminated_exact", "error"), ("near", "contaminated_near", "error"),
    ("ngram", "contaminated_ngram", "warning")])
def test_planted_contamination_found_with_both_lines(report, case, kind, code, severity):
    expect = case[2][kind]
    f = report.find(code)
    assert f is not None and f.severity == severity
    assert {s.line for s in f.rows} == set(expect)
    assert f.examples  # each example names the training line the eval row came from
    for e in f.examples:
        assert e.other is not None and e.other.line == expect[e.source.line]
        assert e.other.path == "train.jsonl" and e.source.path == "eval.jsonl"


def test_clean_eval_rows_not_flagged(report, case):
    flagged = {s.line for f in report["contamination"].findings for s in f.rows}
    assert flagged.isdisjoint(range(1, 31))
    assert report["contamination"].stats["contaminated"] == 15


def test_clean_eval_set_is_clean(case):
    train, ev, _ = case
    rep = audit(train, eval_records=ev[:30])
    assert rep["contamination"].findings == [] and rep["contamination"].status == "ok"
    assert rep["contamination"].verdict.startswith("Clean")


def test_not_checked_without_eval(case):
    rep = audit(case[0][:50])
    assert rep["contamination"].status == "skipped" and rep["contamination"].checked is False
