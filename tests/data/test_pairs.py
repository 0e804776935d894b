"""Preference pairs: every format and its detection, implicit prompts, and every problem reported
at once as `file:line [field]: what; what to do`."""

from __future__ import annotations

import json
import os
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from instruct_tune.data.pairs import (
    PairRecord,
    is_preference_data,
    is_preference_source,
    load_pairs,
    split_text_prompt,
)
from instruct_tune.data.records import Message
from instruct_tune.errors import ConfigError, DataError

U, A, S = "user", "assistant", "system"


def msg(role: str, content: str) -> dict:
    return {"role": role, "content": content}


def prompt_of(p: PairRecord) -> list[tuple[str, str, str]]:
    return [(m.role, m.content, m.input) for m in p.prompt]


@pytest.mark.parametrize("row,fmt,prompt,chosen,rejected", [
    ({"prompt": "Capital of France?", "chosen": "Paris", "rejected": "Rome"}, "standard",
     [(U, "Capital of France?", "")], "Paris", "Rome"),
    ({"instruction": "Translate.", "input": "chat", "chosen": "cat", "rejected": "dog"}, "alpaca",
     [(U, "Translate.", "chat")], "cat", "dog"),
    ({"instruction": "Say hi.", "input": None, "chosen": "hi", "rejected": "bye"}, "alpaca",
     [(U, "Say hi.", "")], "hi", "bye"),
    ({"prompt": [msg(S, "Be brief."), msg(U, "Hi"), msg(A, "Hello"), msg(U, "2+2?")],
      "chosen": [msg(A, "4")], "rejected": [msg(A, "5")]}, "conversational",
     [(S, "Be brief.", ""), (U, "Hi", ""), (A, "Hello", ""), (U, "2+2?", "")], "4", "5"),
    # One message dict, or a plain string, as the answer.
    ({"prompt": [msg(U, "2+2?")], "chosen": msg(A, "4"), "rejected": "5"}, "conversational",
     [(U, "2+2?", "")], "4", "5"),
    # UltraFeedback: a text prompt, answers as the whole conversation (prompt repeated).
    ({"prompt": "2+2?", "chosen": [msg(U, "2+2?"), msg(A, "4")],
      "rejected": [msg(U, "2+2?"), msg(A, "5")]}, "standard", [(U, "2+2?", "")], "4", "5"),
    ({"chosen": [msg(U, "Hi"), msg(A, "Hello!")], "rejected": [msg(U, "Hi"), msg(A, "Go away.")]},
     "implicit", [(U, "Hi", "")], "Hello!", "Go away."),
    ({"chosen": "Human: 2+2?\n\nAssistant: It is 4.", "rejected": "Human: 2+2?\n\nAssistant: It is 5."},
     "implicit", [(U, "Human: 2+2?\n\nAssistant: It is ", "")], "4.", "5."),
])
def test_formats_detected_and_read(write, row, fmt, prompt, chosen, rejected):
    result = load_pairs(write("p.jsonl", [{**row, "score": 7}]))
    assert result.format == fmt
    [pair] = result.records
    assert (prompt_of(pair), pair.chosen, pair.rejected) == (prompt, chosen, rejected)
    assert pair.meta == {"score": 7} and pair.source.line == 1
    assert pair.record("rejected").messages[-1] == Message("assistant", rejected)


def test_csv_conversation_as_json_string_and_text_prompt_left_alone(write):
    rows = [{"prompt": json.dumps([msg(U, "Hi")]), "chosen": "Hello", "rejected": "Bye"},
            {"prompt": "[INST] hi [/INST]", "chosen": "Hello", "rejected": "Bye"}]
    pairs = load_pairs(write("p.csv", rows)).records
    assert [prompt_of(p) for p in pairs] == [[(U, "Hi", "")], [(U, "[INST] hi [/INST]", "")]]
    assert [p.source.line for p in pairs] == [2, 3]  # line 1 is the header


def test_columns_mapping(write):
    path = write("p.jsonl", [{"question": "Q?", "good": "yes", "bad": "no"}])
    [pair] = load_pairs(path, columns="prompt=question,chosen=good,rejected=bad").records
    assert (prompt_of(pair), pair.chosen, pair.rejected) == ([(U, "Q?", "")], "yes", "no")
    with pytest.raises(DataError, match=r"\[goood\]: column 'goood' \(from --columns\) is not in"):
        load_pairs(path, columns="prompt=question,chosen=goood,rejected=bad")
    with pytest.raises(ConfigError, match="unknown field.*output"):
        load_pairs(path, columns="output=good")


def test_is_preference_data(write):
    assert is_preference_data(["prompt", "chosen", "rejected"])
    assert is_preference_data(["chosen", "rejected"])
    assert not is_preference_data(["instruction", "output"])
    assert is_preference_data(["q", "good", "bad"], "chosen=good,rejected=bad")
    assert is_preference_source(write("p.jsonl", [{"chosen": "a b", "rejected": "a c"}]))
    assert not is_preference_source(write("s.jsonl", [{"instruction": "x", "output": "y"}]))


def test_not_pairs_and_missing_column_are_file_level(write):
    with pytest.raises(DataError, match=r"s\.jsonl: not preference pairs \(columns found: "
                                        r"instruction, output\);.*--columns chosen=COLUMN"):
        load_pairs(write("s.jsonl", [{"instruction": "x", "output": "y"}]))
    with pytest.raises(DataError, match=r"p\.jsonl \[prompt\]: column missing in every row"):
        load_pairs(write("p.jsonl", [{"chosen": "a", "rejected": "b"}]), format="standard")


BAD_ROWS = [  # (row, field, what) – each message must also say what to do after "; "
    ({"prompt": "Q", "rejected": "no"}, "chosen", "missing"),
    ({"prompt": "Q", "chosen": "yes", "rejected": 3}, "rejected", "must be a string (got number 3)"),
    ({"prompt": "Q", "chosen": "  ", "rejected": "no"}, "chosen", "is empty"),
    ({"prompt": "", "chosen": "yes", "rejected": "no"}, "prompt", "is empty"),
    ({"prompt": "Q", "chosen": "same", "rejected": "same "}, "rejected", "same as chosen"),
    ({"prompt": [msg(U, "Q"), msg(A, "x")], "chosen": "a", "rejected": "b"}, "prompt",
     "does not end on a user turn (roles: ['user', 'assistant'])"),
    ({"prompt": [msg(U, "Q")], "chosen": [msg(U, "other"), msg(A, "a")], "rejected": "b"}, "chosen",
     "is not one assistant answer"),
    ({"prompt": [msg("bot", "Q")], "chosen": "a", "rejected": "b"}, "prompt[0].role", "unknown role"),
    ({"prompt": [msg(U, "Q")], "chosen": [msg(A, "")], "rejected": "b"}, "chosen[0].content",
     "is empty"),
]
IMPLICIT_BAD = [
    ({"chosen": "cat", "rejected": "cats"}, "rejected",
     "implicit prompt: chosen and rejected share no prompt"),
    ({"chosen": "Q: a ", "rejected": "Q: a b"}, "chosen", "implicit prompt: nothing left for the answer"),
    ({"chosen": [msg(U, "Q"), msg(A, "a")], "rejected": "Q b"}, "rejected",
     "chosen and rejected must both be conversations or both be texts"),
    ({"chosen": [msg(U, "Q")], "rejected": [msg(U, "Q"), msg(A, "b")]}, "chosen",
     "implicit prompt: nothing left for the answer"),
    ({"chosen": [msg(U, "Q"), msg(A, "a")], "rejected": [msg(U, "R"), msg(A, "b")]}, "rejected",
     "implicit prompt: chosen and rejected share no prompt"),
    ({"chosen": [msg(U, "Q"), msg(A, "a"), msg(U, "R"), msg(A, "b")],
      "rejected": [msg(U, "Q"), msg(A, "x"), msg(U, "R"), msg(A, "c")]}, "rejected",
     "implicit prompt: chosen and rejected differ before their final answer (from message 2 on)"),
    ({"chosen": [msg(A, "hi"), msg(A, "a")], "rejected": [msg(A, "hi"), msg(A, "b")]},
     "chosen/rejected", "implicit prompt: the shared prompt does not end on a user turn"),
]


@pytest.mark.parametrize("row,field,what", BAD_ROWS + IMPLICIT_BAD)
def test_each_problem_names_file_line_field_and_fix(write, row, field, what):
    good = ({"prompt": "Q", "chosen": "a", "rejected": "b"} if "prompt" in row
            else {"chosen": "Q a", "rejected": "Q b"})
    path = write("p.jsonl", [good, row])
    with pytest.raises(DataError) as e:
        load_pairs(path)
    [problem] = e.value.problems
    assert str(problem).startswith(f"{path}:2 [{field}]: {what}")
    assert re.search(r"; \w", problem.message), "every message says what to do"


def test_all_problems_in_one_pass_and_skip_invalid(write):
    rows = [{"prompt": "Q", "chosen": "a", "rejected": "b"}] + [r for r, _, _ in BAD_ROWS]
    rows.append({"prompt": "Q", "rejected": ""})  # two problems in one row
    path = write("p.jsonl", rows)
    with pytest.raises(DataError) as e:
        load_pairs(path)
    lines = [p.line for p in e.value.problems]
    assert lines == list(range(2, len(rows) + 1)) + [len(rows)]
    result = load_pairs(path, skip_invalid=True)
    assert len(result.records) == 1 and len(result.skipped) == len(rows) - 1
    assert f"skipped {len(rows) - 1} invalid rows: [chosen] missing (2)" in result.summary()


@given(st.lists(st.text("ab \n", min_size=1, max_size=6), max_size=4),
       st.text("ab \n", max_size=12), st.text("ab \n", max_size=12))
@settings(max_examples=300, deadline=None, derandomize=True)
def test_split_text_prompt_never_splits_a_word(words, a, b):
    chosen, rejected = " ".join(words) + a, " ".join(words) + b
    prompt, c, r = split_text_prompt(chosen, rejected)
    assert prompt + c == chosen and prompt + r == rejected
    assert prompt == "" or prompt[-1].isspace()  # the cut follows whitespace: no word split
    # ...and it is the longest such cut: past it, chosen and rejected differ before any whitespace.
    k = len(os.path.commonprefix([chosen, rejected]))
    assert not any(ch.isspace() for ch in chosen[len(prompt):k])


def test_split_text_prompt_examples():
    assert split_text_prompt("Q: 2+2?\nA: 4", "Q: 2+2?\nA: 5") == ("Q: 2+2?\nA: ", "4", "5")
    assert split_text_prompt("The answer is yes", "The answer is yesterday") == \
        ("The answer is ", "yes", "yesterday")
    assert split_text_prompt("cat", "cats") == ("", "cat", "cats")


def test_pairs_from_shared_data(shared_data, tmp_path):
    """Real instructions: chosen = the output, rejected = its first half (by words)."""
    text = (shared_data / "self_instruct_seed_tasks.jsonl").read_text()
    rows = [json.loads(line) for line in text.splitlines()]
    pairs = [{"instruction": r["instruction"], "input": r["input"], "chosen": r["output"],
              "rejected": " ".join(r["output"].split()[:len(r["output"].split()) // 2])}
             for r in rows]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    result = load_pairs(path, skip_invalid=True)
    assert result.format == "alpaca"
    one_word = sum(len(r["output"].split()) == 1 for r in rows)
    assert len(result.skipped) == one_word and len(result.records) == len(rows) - one_word
    assert all(p.message.startswith("is empty; ") and p.field == "rejected" for p in result.skipped)
    first = result.records[0]
    assert (first.prompt[0].content, first.chosen) == (rows[0]["instruction"], rows[0]["output"])
