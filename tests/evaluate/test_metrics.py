"""Metrics on hand-built outputs: no model needed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from instruct_tune.data.templates import get_template
from instruct_tune.evaluate.metrics import (
    Generation,
    difference,
    leaked_marker,
    normalize,
    normalized_exact_match,
    rouge_l,
    score,
    template_markers,
)


def gen(text: str, stopped: bool = True, n: int | None = None, raw: str | None = None) -> Generation:
    return Generation(list(range(len(text.split()) if n is None else n)), text,
                      text if raw is None else raw, stopped)


def lcs_dp(a: list[str], b: list[str]) -> int:
    """Textbook O(len(a)*len(b)) longest common subsequence, as an independent reference."""
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


words = st.lists(st.sampled_from(["cat", "dog", "sun", "red", "blue", "one", "two"]), max_size=12)


@given(words, words)
def test_rouge_l_matches_textbook_lcs_f1(a, b):
    pred, ref = " ".join(a), " ".join(b)
    lcs = lcs_dp(a, b)
    if not a or not b:
        expected = float(a == b)
    elif lcs == 0:
        expected = 0.0
    else:
        p, r = lcs / len(a), lcs / len(b)
        expected = 2 * p * r / (p + r)
    assert rouge_l(pred, ref) == pytest.approx(expected)


@given(words, words)
def test_rouge_l_is_symmetric_and_bounded(a, b):
    x, y = " ".join(a), " ".join(b)
    assert rouge_l(x, y) == pytest.approx(rouge_l(y, x))
    assert 0.0 <= rouge_l(x, y) <= 1.0


def test_rouge_l_known_values():
    assert rouge_l("the cat sat on the mat", "the cat sat on the mat") == 1.0
    assert rouge_l("cat dog", "sun moon") == 0.0
    # both normalize to 4 words ("a" is an article), LCS "sat on mat": p = r = 3/4
    assert rouge_l("A cat sat on mat", "dog sat on mat") == pytest.approx(2 * (3 / 4) * (3 / 4) / 1.5)


def test_normalize_squad_style():
    assert normalize("  The  Answer is: Paris! ") == "answer is paris"
    assert normalize("an apple, a pear") == "apple pear"
    assert normalized_exact_match("Paris.", "paris")
    assert not normalized_exact_match("Paris", "London")


def test_score_counts_stops_leaks_and_matches():
    refs = ["Paris", "four", "blue sky", "yes"]
    gens = [
        gen("Paris"),  # exact
        gen("Four.", stopped=False),  # normalized match only, did not stop
        gen("blue sky\n\n### Instruction:\nmore", stopped=False),  # leaks into a new turn
        gen("no", raw="no<|im_start|>user"),  # special-token leak visible only in raw
    ]
    r = score(gens, refs)
    assert r["n"] == 4
    assert r["stop_rate"] == 0.5
    assert r["template_leak_rate"] == 0.5
    assert r["exact_match"] == 0.25
    assert r["normalized_exact_match"] == 0.5
    assert r["by_task"] == {}


def test_lengths_mean_and_p95():
    gens = [gen("x", n=n) for n in range(1, 101)]
    r = score(gens, ["x"] * 100)
    assert r["mean_length"] == pytest.approx(50.5)
    assert 95 <= r["p95_length"] <= 96


def test_by_task_breakdown_and_difference():
    refs = ["a1", "b1", "b2"]
    tuned = score([gen("a1"), gen("b1"), gen("zz", stopped=False)], refs, tasks=["qa", "math", "math"])
    base = score([gen("zz", stopped=False)] * 3, refs, tasks=["qa", "math", "math"])
    assert set(tuned["by_task"]) == {"qa", "math"}
    assert tuned["by_task"]["qa"]["exact_match"] == 1.0
    assert tuned["by_task"]["math"]["n"] == 2 and tuned["by_task"]["math"]["stop_rate"] == 0.5
    d = difference(tuned, base)
    assert d["stop_rate"] == pytest.approx(2 / 3)
    assert d["by_task"]["math"]["exact_match"] == pytest.approx(0.5)


def test_leaked_marker_reports_the_first_one():
    assert leaked_marker("ok ### Response: x ### Instruction:", ["### Instruction:", "### Response:"]) \
        == "### Response:"
    assert leaked_marker("a clean answer", ["### Instruction:"]) is None


def test_template_markers_come_from_the_saved_template():
    alpaca = template_markers(get_template("alpaca"), extra=())
    assert "### Instruction:" in alpaca and "### Response:" in alpaca and "### Input:" in alpaca
    chatml = template_markers(get_template("chatml"), extra=())
    assert "<|im_start|>assistant" in chatml and "<|im_start|>user" in chatml
    assert not any(len(m) < 3 for m in alpaca + chatml)
