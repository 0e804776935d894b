"""`instruct-tune audit` end to end: files in, JSON or text out, --strict exit codes."""

from __future__ import annotations

import json

import pytest

from instruct_tune.cli import main
from tests.audit.synth import Synth


def write_jsonl(path, records, extra_lines=()):
    with open(path, "w") as f:
        for r in records:
            f.write(json.dumps({"instruction": r.instruction, "input": r.input,
                                "output": r.output}) + "\n")
        for line in extra_lines:
            f.write(line + "\n")
    return str(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("audit")
    recs = Synth(0).records(150)
    clean = write_jsonl(d / "clean.jsonl", recs)
    bad = write_jsonl(d / "bad.jsonl", recs, [
        json.dumps({"instruction": "Say hi!", "output": "say HI!"}),  # line 151: echo
        json.dumps({"instruction": "Say bye", "output": "bye</s>"}),  # line 152: marker
        '{"instruction": "no output field"}',  # line 153: invalid, skipped
        json.dumps({"instruction": "Empty", "output": ""}),  # line 154: invalid (the loader's)
    ])
    ev = write_jsonl(d / "eval.jsonl", recs[:3] + Synth(9).records(5))
    return clean, bad, ev


def run_json(capsys, *args) -> tuple[int, dict]:
    code = main(["audit", *args, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_json_has_the_five_levers(files, capsys):
    code, d = run_json(capsys, files[0])
    assert code == 0
    assert list(d) == ["size", "task_diversity", "phrasing_diversity", "output_quality",
                       "contamination"]
    assert d["size"]["stats"]["rows"] == 150
    assert all(f["severity"] != "error" for lever in d.values() for f in lever["findings"])


def test_findings_point_at_file_lines(files, capsys):
    code, d = run_json(capsys, files[1])
    assert code == 0  # not --strict
    quality = {f["code"]: f for f in d["output_quality"]["findings"]}
    assert quality["echoes_instruction"]["lines"] == [151]
    assert quality["template_marker_in_output"]["lines"] == [152]
    invalid = {f["code"]: f for f in d["size"]["findings"]}["invalid_rows"]
    assert invalid["lines"] == [153, 154] and invalid["severity"] == "warning"


def test_strict_exit_code(files, capsys):
    assert main(["audit", files[1], "--strict", "--json"]) == 1
    assert main(["audit", files[0], "--strict", "--json"]) == 0
    capsys.readouterr()


def test_eval_data_contamination(files, capsys):
    _, d = run_json(capsys, files[0], "--eval-data", files[2])
    c = d["contamination"]
    assert c["status"] == "error" and c["stats"]["exact"] == 3
    exact = c["findings"][0]
    assert exact["lines"] == [1, 2, 3] and exact["examples"][0]["other_line"] == 1


def test_text_report(files, capsys):
    assert main(["audit", files[1]]) == 0
    out = capsys.readouterr().out
    for title in ("Size", "Task diversity", "Phrasing diversity", "Output quality", "Contamination"):
        assert title in out
    assert "bad.jsonl:152" in out and "ERROR" in out


def test_missing_file_is_a_clean_error(tmp_path, capsys):
    assert main(["audit", str(tmp_path / "nope.jsonl")]) == 2
    assert "Traceback" not in capsys.readouterr().err
