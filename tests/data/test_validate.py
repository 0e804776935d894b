"""Validation: every kind of bad row is reported, all at once, naming file, line and field."""

from __future__ import annotations

import json

import pytest

from instruct_tune.data.load import load_records, load_records_report
from instruct_tune.data.validate import (
    detect_format,
    parse_columns,
    problem_reason,
    suggest_columns,
    summarize_problems,
)
from instruct_tune.errors import ConfigError, DataError, Problem

GOOD = {"instruction": "Do it.", "output": "Done."}
U, A = {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}

# (bad row, field named in the problem, words the message must contain)
BAD_ROWS = [
    ({"output": "x"}, "instruction", "missing"),
    ({"instruction": "x"}, "output", "missing"),
    ({"instruction": "", "output": "x"}, "instruction", "is empty"),
    ({"instruction": "x", "output": " \n\t"}, "output", "is empty"),
    ({"instruction": "x", "output": 42}, "output", "must be a string (got number 42"),
    ({"instruction": "x", "output": 1.5}, "output", "got number"),
    ({"instruction": "x", "output": True}, "output", "got boolean"),
    ({"instruction": "x", "output": None}, "output", "got null"),
    ({"instruction": ["a", "b"], "output": "x"}, "instruction", "got array"),
    ({"instruction": {"a": 1}, "output": "x"}, "instruction", "got object"),
    ({"instruction": "x", "input": 3, "output": "y"}, "input", "got number"),
    ({"instruction": "x\x00y", "output": "y"}, "instruction", "NUL character"),
    ({"instruction": "x", "output": "a\ud800b"}, "output", "unpaired surrogate"),
    ({"prompt": "p"}, "completion", "missing"),
    ({"prompt": "p", "completion": ""}, "completion", "is empty"),
    ({"messages": "hello"}, "messages", "must be a list of messages"),
    ({"messages": []}, "messages", "no assistant turn"),
    ({"messages": [U]}, "messages", "no assistant turn"),
    ({"messages": [A]}, "messages", "no user turn"),
    ({"messages": [U, A, U]}, "messages", "last turn is not from the assistant"),
    ({"messages": [U, "Hello"]}, "messages[1]", "must be an object"),
    ({"messages": [U, {"role": "tool", "content": "x"}]}, "messages[1].role", "unknown role"),
    ({"messages": [U, {"content": "x"}]}, "messages[1].role", "unknown role (missing)"),
    ({"messages": [U, {"role": "assistant"}]}, "messages[1].content", "missing"),
    ({"messages": [U, {"role": "assistant", "content": ""}]}, "messages[1].content", "is empty"),
    ({"messages": [U, {"role": "assistant", "content": [{"type": "text", "text": "x"}]}]},
     "messages[1].content", "got array"),
    ({"messages": [{"role": "user", "content": 5}, A]}, "messages[0].content", "got number"),
]


@pytest.mark.parametrize(("row", "field", "words"), BAD_ROWS,
                         ids=[f"{f}-{w[:20]}" for _, f, w in BAD_ROWS])
def test_each_bad_row_names_file_line_and_field(write, row, field, words):
    good = {"prompt": "p", "completion": "c"} if "prompt" in row else GOOD
    rows = [good, good, row] if "messages" not in row else [row]
    line = len(rows)
    path = write("d.jsonl", "".join(json.dumps(r) + "\n" for r in rows))  # escapes lone surrogates
    fmt = "prompt_completion" if "prompt" in row else "auto"
    with pytest.raises(DataError) as err:
        load_records(path, format=fmt)
    assert f"{path}:{line} [{field}]: " in str(err.value)
    assert words in str(err.value)
    assert [(p.path, p.line, p.field) for p in err.value.problems] == [(str(path), line, field)]


def test_all_problems_reported_in_one_pass(write):
    rows = [GOOD, {"instruction": "", "output": 1}, GOOD, {"output": "x"}, "not an object", GOOD]
    with pytest.raises(DataError) as err:
        load_records(write("d.jsonl", rows))
    got = [(p.line, p.field) for p in err.value.problems]
    assert got == [(2, "instruction"), (2, "output"), (4, "instruction"), (5, None)]


def test_null_input_means_no_input(write):
    rec = load_records(write("d.jsonl", [{"instruction": "x", "input": None, "output": "y"}]))[0]
    assert rec.input == ""


def test_text_is_kept_exactly(write):
    text = "  leading and trailing spaces \r\n### Response:\n\u2028x\x85y\x0c "
    rec = load_records(write("d.jsonl", [{"instruction": text, "output": text}]))[0]
    assert rec.instruction == text and rec.output == text


def test_skip_invalid_keeps_good_rows_and_reports_one_problem_per_row(write):
    rows = [GOOD, {"instruction": "", "output": ""}, {"instruction": "x", "output": 3}, GOOD]
    result = load_records_report(write("d.jsonl", rows), skip_invalid=True)
    assert [r.source.line for r in result.records] == [1, 4]
    assert [p.line for p in result.skipped] == [2, 3]
    assert dict(summarize_problems(result.skipped)) == {"[instruction] is empty": 1,
                                                        "[output] must be a string": 1}


def test_no_valid_rows_is_an_error_even_when_skipping(write):
    with pytest.raises(DataError, match="No valid rows: all 2 rows"):
        load_records(write("d.jsonl", [{"instruction": "", "output": "x"}] * 2), skip_invalid=True)


def test_missing_columns_name_what_exists_and_suggest_a_mapping(write):
    path = write("qa.jsonl", [{"question": "q", "answer": "a"}])
    with pytest.raises(DataError) as err:
        load_records(path)
    msg = str(err.value)
    assert "columns found: answer, question" in msg
    assert "--columns instruction=question,output=answer" in msg and "--format" in msg
    assert err.value.problems[0].path == str(path)


def test_column_missing_in_every_row_is_one_problem(write):
    with pytest.raises(DataError) as err:
        load_records(write("d.jsonl", [{"instruction": "x", "response": "y"}] * 100))
    assert len(err.value.problems) == 1
    assert err.value.problems[0].field == "output"
    assert "columns found: instruction, response" in str(err.value)


def test_mapped_column_missing_names_the_users_column(write):
    with pytest.raises(DataError) as err:
        load_records(write("d.jsonl", [{"q": "x", "a": "y"}]), columns="instruction=q,output=answer")
    assert err.value.problems[0].field == "answer"


def test_mapped_field_problem_names_the_users_column(write):
    with pytest.raises(DataError, match=r"d\.jsonl:1 \[answer\]: is empty"):
        load_records(write("d.jsonl", [{"q": "x", "answer": ""}]), columns="instruction=q,output=answer")


def test_format_given_but_columns_absent(write):
    with pytest.raises(DataError, match=r"\[messages\]: column missing in every row"):
        load_records(write("d.jsonl", [GOOD]), format="chat")


@pytest.mark.parametrize("spec", ["instruction", "=q", "instruction=", "bogus=q"])
def test_bad_columns_spec(spec):
    with pytest.raises(ConfigError, match="--columns"):
        parse_columns(spec)


def test_bad_format_name(write):
    with pytest.raises(ConfigError, match="--format"):
        load_records(write("d.jsonl", [GOOD]), format="sharegpt")


@pytest.mark.parametrize(("keys", "fmt"), [({"instruction", "output"}, "alpaca"),
                                           ({"instruction"}, "alpaca"),
                                           ({"prompt", "completion"}, "prompt_completion"),
                                           ({"messages", "id"}, "chat"),
                                           ({"conversations"}, "chat"), ({"text"}, None)])
def test_detect_format(keys, fmt):
    assert detect_format(keys) == fmt


def test_suggest_columns():
    assert suggest_columns({"Query", "Response"}) == "instruction=Query,output=Response"
    assert suggest_columns({"foo", "bar"}) is None


def test_problem_reason_groups_by_field_and_kind():
    a = Problem("f", 1, "messages[3].role", "unknown role (got 'tool'); use ...")
    b = Problem("f", 9, "messages[0].role", "unknown role (got 'x'); use ...")
    assert problem_reason(a) == problem_reason(b) == "[messages[].role] unknown role"
    assert problem_reason(Problem("f", 1, None, "invalid JSON (x at column 3); fix")) \
        == "invalid JSON"
