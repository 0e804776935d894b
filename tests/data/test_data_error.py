"""An invalid-data error lists every bad row and says each distinct piece of advice once: on the
first row that needs it, and --skip-invalid only in the closing hint."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from instruct_tune.cli import main
from instruct_tune.data.load import load_records
from instruct_tune.errors import DataError, Problem, split_advice

GOOD = {"instruction": "Add 2 and 2.", "output": "4"}


@pytest.fixture
def bad_file(tmp_path):
    rows = [json.dumps(GOOD), json.dumps({**GOOD, "output": ""}), json.dumps(GOOD),
            json.dumps({**GOOD, "output": ""}), "{not json", json.dumps({**GOOD, "output": 5}),
            "{not json either"]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_each_advice_once_and_every_row_listed(bad_file):
    with pytest.raises(DataError) as e:
        load_records(bad_file)
    text = str(e.value)
    for line, what in [(2, "[output]: is empty"), (4, "[output]: is empty"), (5, ": invalid JSON"),
                       (6, "[output]: must be a string"), (7, ": invalid JSON")]:
        assert re.search(rf"bad\.jsonl:{line} ?{re.escape(what)}", text), (line, text)
    for advice in ("fill it in or drop the row", "fix the line", "--skip-invalid",
                   "quote the value or fix the column type"):
        assert text.count(advice) == 1, (advice, text)
    assert text.rstrip().endswith("pass --skip-invalid to drop them and continue.")


def test_the_cli_prints_it_once(bad_file, capsys):
    assert main(["audit", str(bad_file), "--no-skip-invalid"]) == 2
    err = capsys.readouterr().err
    assert err.count("--skip-invalid") == 1 and err.count("fill it in") == 1
    assert "Traceback" not in err


def test_advice_follows_the_first_top_level_semicolon():
    assert split_advice("must be a string (got 'a; b'); quote it") == \
        ("must be a string (got 'a; b')", "quote it")
    assert split_advice("prompt is 612 tokens") == ("prompt is 612 tokens", "")


WHATS = ["is empty", "invalid JSON (bad: column 2)", "must be a string (got number 5)",
         "unknown role (got 'x; y')"]
ADVICES = ["", "fill it in or drop the row", "fix the line, or pass --skip-invalid to drop it",
           "use system, user or assistant"]


@given(st.lists(st.tuples(st.integers(1, 99), st.sampled_from(WHATS), st.sampled_from(ADVICES)),
                min_size=1, max_size=30))
def test_each_distinct_advice_exactly_once(rows):
    problems = [Problem("f.jsonl", line, "output", what + (f"; {advice}" if advice else ""))
                for line, what, advice in rows]
    text = str(DataError(problems))
    body = text.split("\n")[1:-1]
    assert len(body) == len(problems)  # one line per problem, in order
    for line, (n, what, _) in zip(body, rows, strict=True):
        assert line.startswith(f"  f.jsonl:{n} [output]: {what}")
    for advice in {a.split(", or pass")[0] for _, _, a in rows if a}:
        assert text.count(f"; {advice}") == 1
    assert text.count("--skip-invalid") == 1  # the closing hint's
