"""Loading: every file type and record format gives the same Records, with the right line numbers."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from instruct_tune.data.load import format_summary, load_records, load_records_report
from instruct_tune.data.records import Message
from instruct_tune.errors import DataError, InstructTuneError

from .conftest import write_rows

ROWS = [
    {"instruction": "Add the numbers.", "input": "2, 3", "output": "5", "task": "math"},
    {"instruction": "Say hi.", "input": "", "output": "Hi!\nHow are you?", "task": "chat"},
    {"instruction": "Quote: \"x\", y", "input": "", "output": "done, ok", "task": "misc"},
]


@pytest.mark.parametrize("suffix", [".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet"])
def test_every_file_type_gives_the_same_records(write, suffix):
    path = write(f"data{suffix}", ROWS)
    recs = load_records(path)
    assert [(r.instruction, r.input, r.output) for r in recs] == \
        [(r["instruction"], r["input"], r["output"]) for r in ROWS]
    assert [r.meta for r in recs] == [{"task": r["task"]} for r in ROWS]
    assert all(r.source.path == str(path) for r in recs)


def test_jsonl_lines_are_physical_lines(write):
    text = "\n" + json.dumps(ROWS[0]) + "\n\n  \n" + json.dumps(ROWS[1]) + "\n"
    recs = load_records(write("d.jsonl", text))
    assert [r.source.line for r in recs] == [2, 5]


def test_json_array_lines_are_where_each_element_starts(write):
    path = write("d.json", ROWS)  # pretty-printed: elements start on known lines
    lines = path.read_text().split("\n")
    starts = [i + 1 for i, line in enumerate(lines) if line.strip() == "{"]
    assert [r.source.line for r in load_records(path)] == starts


def test_compact_json_array_on_one_line(write):
    recs = load_records(write("d.json", json.dumps(ROWS)))
    assert [r.source.line for r in recs] == [1, 1, 1]


def test_csv_lines_count_the_header_and_multiline_fields(write):
    # Row 1 (line 2) has a two-line output, so row 2 starts on line 4.
    recs = load_records(write("d.csv", ROWS[1:]))
    assert [r.source.line for r in recs] == [2, 4]


def test_parquet_rows_are_numbered(write):
    assert [r.source.line for r in load_records(write("d.parquet", ROWS))] == [1, 2, 3]


def test_json_file_holding_json_lines(write):
    recs = load_records(write("d.json", "".join(json.dumps(r) + "\n" for r in ROWS)))
    assert [r.source.line for r in recs] == [1, 2, 3]


def test_single_object_and_wrapped_list(write):
    assert len(load_records(write("one.json", json.dumps(ROWS[0], indent=2)))) == 1
    assert len(load_records(write("wrapped.json", json.dumps({"data": ROWS})))) == 3


def test_prompt_completion(write):
    recs = load_records(write("pc.jsonl", [{"prompt": "2+2=", "completion": "4", "id": 7}]))
    assert recs[0].messages == (Message("user", "2+2="), Message("assistant", "4"))
    assert recs[0].meta == {"id": 7}
    assert load_records_report(write("pc2.jsonl", [{"prompt": "a", "completion": "b"}])).format \
        == "prompt_completion"


def test_multi_turn_chat_keeps_every_turn(write):
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Bye"},
            {"role": "assistant", "content": "Bye!"}]
    rec = load_records(write("c.jsonl", [{"messages": msgs, "category": "x"}]))[0]
    assert [(m.role, m.content) for m in rec.messages] == [(m["role"], m["content"]) for m in msgs]
    assert rec.output == "Bye!" and rec.meta == {"category": "x"}


def test_sharegpt_conversations(write):
    conv = [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]
    rec = load_records(write("s.jsonl", [{"conversations": conv}]))[0]
    assert [(m.role, m.content) for m in rec.messages] == [("user", "Hi"), ("assistant", "Hello")]


def test_chat_stored_as_json_string_in_csv(write):
    msgs = [{"role": "user", "content": "Hi, you"}, {"role": "assistant", "content": "Hello"}]
    rec = load_records(write("c.csv", [{"messages": json.dumps(msgs)}]))[0]
    assert rec.output == "Hello"


def test_chat_in_parquet_nested_column(write):
    msgs = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]
    assert load_records(write("c.parquet", [{"messages": msgs}]))[0].output == "Yo"


@pytest.mark.parametrize("columns", ["instruction=question, output=answer",
                                     {"instruction": "question", "output": "answer"}])
def test_columns_mapping(write, columns):
    path = write("q.jsonl", [{"question": "Why?", "answer": "Because.", "source": "web"}])
    rec = load_records(path, columns=columns)[0]
    assert (rec.instruction, rec.output, rec.meta) == ("Why?", "Because.", {"source": "web"})


def test_format_override(write):
    path = write("both.jsonl", [{"instruction": "i", "output": "o", "prompt": "p",
                                 "completion": "c"}])
    assert load_records(path)[0].instruction == "i"
    rec = load_records(path, format="prompt_completion")[0]
    assert (rec.instruction, rec.output, rec.meta) == ("p", "c", {"instruction": "i", "output": "o"})


def test_directory_loads_every_file(write, tmp_path):
    write("d/a.jsonl", ROWS[:2])
    write("d/sub/b.csv", ROWS[2:])
    write("d/.hidden/c.jsonl", ROWS)
    write("d/README.md", "# notes")
    recs = load_records(tmp_path / "d")
    assert len(recs) == 3
    assert {r.source.path for r in recs} == {str(tmp_path / "d/a.jsonl"),
                                             str(tmp_path / "d/sub/b.csv")}


def test_directory_with_splits_uses_train(write, tmp_path):
    write("d/train.jsonl", ROWS[:2])
    write("d/test.jsonl", ROWS[2:])
    result = load_records_report(tmp_path / "d")
    assert len(result.records) == 2
    assert "test.jsonl" in result.summary()


def test_saved_dataset_directory(tmp_path):
    datasets = pytest.importorskip("datasets")
    datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS),
                          "test": datasets.Dataset.from_list(ROWS[:1])}).save_to_disk(tmp_path / "s")
    result = load_records_report(tmp_path / "s")
    assert [r.output for r in result.records] == [r["output"] for r in ROWS]
    assert [r.source.line for r in result.records] == [1, 2, 3]
    assert "test" in result.summary()


def test_unknown_dataset_name_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InstructTuneError, match="datasets could not load it"):
        load_records("nobody-xyz/no-such-dataset")


def test_summary_line(write):
    path = write("s.jsonl", [ROWS[0], {"instruction": "x", "output": ""},
                             {"instruction": "y", "output": ""}, {"instruction": 1, "output": "z"}])
    result = load_records_report(path, skip_invalid=True)
    line = format_summary(result)
    assert line.startswith(f"Loaded 1 row (alpaca) from {path}; skipped 3 invalid rows:")
    assert "[output] is empty (2)" in line and "[instruction] must be a string (1)" in line
    assert "\n" not in line


def test_shared_alpaca_data(shared_data):
    for name, n in (("self_instruct_seed_tasks.jsonl", 175),
                    ("self_instruct_user_oriented.jsonl", 252)):
        result = load_records_report(shared_data / name)
        assert (len(result.records), result.format, result.skipped) == (n, "alpaca", [])
        assert all(r.instruction and r.output for r in result.records)


# Any text survives a round trip through every writer: no stripping, no newline translation,
# no splitting on U+2028 or other exotic line breaks. NUL and surrogates are rejected by design.
_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                min_size=1).filter(lambda s: not s.isspace())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(_text, st.text(st.characters(blacklist_categories=("Cs",),
                                                            blacklist_characters="\x00")), _text),
                     min_size=1, max_size=4),
       suffix=st.sampled_from([".jsonl", ".json", ".csv", ".tsv", ".parquet"]))
def test_text_round_trips_exactly(tmp_path, rows, suffix):
    path = write_rows(tmp_path / f"rt{suffix}",
                      [{"instruction": i, "input": x, "output": o} for i, x, o in rows])
    try:
        recs = load_records(path)
    except DataError as e:  # pragma: no cover - shown on failure
        raise AssertionError(str(e)) from e
    assert [(r.instruction, r.input, r.output) for r in recs] == rows
