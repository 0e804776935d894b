"""Task extraction, size thresholds, dominance warnings, token checks, and real data."""

from __future__ import annotations

import json

import pytest

from instruct_tune.audit.report import audit
from instruct_tune.audit.tasks import task_of
from instruct_tune.data.records import Record, Source
from tests.audit.synth import Synth


@pytest.mark.parametrize("instruction, verb, obj", [
    ("Write a poem about the sea.", "write", "poem"),
    ("Please write a 500-word essay on dogs.", "write", "essay"),
    ("Can you give me three tips for sleeping better?", "give", "tips"),
    ("Generate a list of five fruits.", "generate", "list"),
    ("Given a sentence, classify its sentiment.", "classify", "sentiment"),
    ("You are given a tweet and you should decide whether it is offensive.", "decide", ""),
    ("Come up with a catchy slogan for a bakery.", "come up with", "slogan"),
    ("Explain how photosynthesis works.", "explain", ""),
    ("What is the capital of France?", "question", "what"),
    ("In your opinion, how would you explain gravity to a child?", "explain", "gravity"),
    ("In what genres does the given movie fall?", "question", "what"),
    ("The given text must be classified as spam or not.", "classify", ""),
    ("Try coming up with a name for the project.", "come up with", "name"),
    ("Écris un poème sur la mer.", "(other)", ""),
])
def test_task_of(instruction, verb, obj):
    assert task_of(instruction) == (verb, obj)


def rows(n: int, instruction: str = "") -> list[Record]:
    syn = Synth(2)
    return [Record.alpaca(instruction or syn.instruction(), syn.text(30), source=Source("s", i + 1))
            for i in range(n)]


@pytest.mark.parametrize("n, severity", [(5, "error"), (30, "warning"), (300, "info")])
def test_size_scale(n, severity):
    f = audit(rows(n)).find("size_scale")
    assert f.severity == severity and f.count == n


def test_size_counts_distinct_prompts():
    recs = rows(40) * 2  # every prompt twice
    rep = audit(recs)
    assert rep["size"].stats["rows"] == 80 and rep["size"].stats["unique_prompts"] == 40
    assert rep.find("size_scale").severity == "warning"  # judged on 40 distinct prompts


def test_skipped_rows_reported():
    from instruct_tune.errors import Problem
    rep = audit(rows(60), skipped=[Problem("d.jsonl", 7, "output", "missing")])
    f = rep.find("invalid_rows")
    assert f.severity == "warning" and [s.line for s in f.rows] == [7]


def test_single_task_set_is_flagged_not_failed():
    syn = Synth(4)
    recs = [Record.alpaca(f"Classify the sentiment of review number {i}.", syn.text(3),
                          syn.text(20), source=Source("s", i + 1)) for i in range(200)]
    rep = audit(recs)
    assert rep.find("task_dominance").severity == "warning"
    assert rep.find("instruction_clusters").severity == "warning"
    assert rep.errors == []


def test_templated_instruction_reuse_is_flagged():
    recs = rows(100, "Translate the input into French.")
    for i, r in enumerate(recs):  # distinct inputs
        recs[i] = Record.alpaca(r.instruction, r.output, f"sentence {i}", source=r.source)
    f = audit(recs).find("reused_instructions")
    assert f.severity == "warning" and f.count == 100 and "templated" in f.advice


def test_rouge_sampled_on_large_sets(monkeypatch):
    from instruct_tune.audit import phrasing
    monkeypatch.setattr(phrasing, "ROUGE_ALL_PAIRS_MAX", 100)
    monkeypatch.setattr(phrasing, "ROUGE_SAMPLE", 50)
    f = audit(rows(300)).find("rouge_l_similar")
    assert f.stats["sampled"] and f.stats["compared"] == 50 and "margin_95" in f.stats


def test_token_checks_with_tokenizer(get_tokenizer_llama):
    recs = Synth(6).records(40)
    rep = audit(recs, tokenizer=get_tokenizer_llama, max_length=256)
    too_long = rep.find("too_long")
    assert too_long is not None and too_long.severity == "warning"
    kept = rep["size"].stats["tokens_per_row"]
    assert kept["max"] <= 256 and rep["size"].stats["tokens_total"] > 0
    share = rep.find("trained_token_share").share
    assert 0 < share < 1
    assert len(too_long.rows) + rep["size"].stats["rows_fitting_max_length"] == 40


def test_special_tokens_of_the_tokenizer_count_as_markers(get_tokenizer_llama):
    recs = rows(30)
    recs.append(Record.alpaca("Say hi.", "hi <|end_of_text|> more", source=Source("s", 99)))
    f = audit(recs, tokenizer=get_tokenizer_llama).find("template_marker_in_output")
    assert f is not None and [s.line for s in f.rows] == [99]


def test_real_self_instruct_data_has_no_errors(shared_data):
    from instruct_tune.data.load import load_records
    for name in ("self_instruct_seed_tasks.jsonl", "self_instruct_user_oriented.jsonl"):
        rep = audit(load_records(shared_data / name))
        assert rep.errors == [], f"{name}: {[f.message for f in rep.errors]}"
        assert rep["phrasing_diversity"].stats["near_duplicate_instructions"] == 0
        json.dumps(rep.to_dict())
