"""--columns hints never lose text: suggestions map input=, unmapped input-like columns warn,
a typo'd column is named with the file's real columns, and --skip-invalid isn't re-advised."""

from __future__ import annotations

import pytest

from instruct_tune.data.load import format_summary, load_records, load_records_report
from instruct_tune.errors import DataError

ROWS = [{"question": "What colour is the sky?", "context": "The sky is blue.", "answer": "Blue."},
        {"question": "Name the cat.", "context": "The cat is Tom.", "answer": "Tom."}]


def test_suggestion_maps_the_input_column_and_following_it_keeps_the_text(write):
    path = write("qa.csv", ROWS)
    with pytest.raises(DataError) as e:
        load_records(path)
    hint = str(e.value).split("--columns ")[-1].split()[0]
    assert "input=context" in hint
    recs = load_records(path, columns=hint)
    assert [r.input for r in recs] == [r["context"] for r in ROWS]


def test_unmapped_input_like_column_warns(write):
    res = load_records_report(write("qa.csv", ROWS), columns="instruction=question,output=answer")
    assert [r.input for r in res.records] == ["", ""]
    assert "'context'" in format_summary(res) and "input=context" in format_summary(res)
    mapped = load_records_report(write("qa2.csv", ROWS),
                                 columns="instruction=question,input=context,output=answer")
    assert not mapped.notes


def test_mapping_a_missing_column_names_the_real_columns(write):
    with pytest.raises(DataError) as e:
        load_records(write("qa.csv", ROWS), columns="instruction=quest,output=answer")
    assert "column 'quest' (from --columns) is not in the file; columns: question, context, " \
        "answer" in str(e.value)


def test_skip_invalid_problems_do_not_advise_skip_invalid(write):
    good = '{"instruction": "a", "output": "b"}\n'
    path = write("d.jsonl", good + "{not json\n" + good)
    with pytest.raises(DataError, match="pass --skip-invalid"):
        load_records(path)
    res = load_records_report(path, skip_invalid=True)
    assert len(res.records) == 2 and len(res.skipped) == 1
    assert "--skip-invalid" not in res.skipped[0].message
    assert "invalid JSON" in res.skipped[0].message
