"""Every planted defect is found (recall 1.0), and a clean set gets no error-level finding."""

from __future__ import annotations

import json
import re

import pytest

from instruct_tune.audit.report import audit


def flagged(report, *codes: str) -> set[int]:
    return {s.line for c in codes if (f := report.find(c)) for s in f.rows}


@pytest.fixture(scope="module")
def report(planted):
    return audit(planted.records)


@pytest.fixture(scope="module")
def clean_report(clean):
    return audit(clean)


def _bigram_jaccard(a: str, b: str) -> float:
    """Reference definition, written independently of the audit's hashing."""
    def grams(t):
        w = re.findall(r"\w+", t.lower())
        return {tuple(w[i:i + 2]) for i in range(len(w) - 1)}
    ga, gb = grams(a), grams(b)
    return len(ga & gb) / len(ga | gb)


def test_planted_near_duplicates_are_true_near_duplicates(planted):
    recs = {r.source.line: r for r in planted.records}
    near = sorted(planted.lines["near"])
    originals, copies = near[:6], near[6:]
    for o, c in zip(originals, copies, strict=True):
        assert _bigram_jaccard(recs[o].instruction, recs[c].instruction) >= 0.8


@pytest.mark.parametrize("kind, codes", [
    ("duplicate", ["duplicate_rows"]),
    ("near", ["near_duplicate_instructions"]),
    ("conflict", ["conflicting_outputs"]),
    ("empty", ["empty_output"]),
    ("echo", ["echoes_instruction"]),
    ("copy_input", ["copies_input"]),
    ("marker", ["template_marker_in_output"]),
    ("refusal", ["refusal_boilerplate"]),
    ("cut", ["cut_off_output", "unterminated_output"]),
])
def test_every_planted_defect_is_found(report, planted, kind, codes):
    missed = planted.lines[kind] - flagged(report, *codes)
    assert not missed, f"{kind}: planted lines not flagged: {sorted(missed)}"


def test_severities_of_planted_defects(report):
    for code in ("empty_output", "echoes_instruction", "template_marker_in_output"):
        assert report.find(code).severity == "error"
    for code in ("duplicate_rows", "conflicting_outputs", "refusal_boilerplate", "copies_input"):
        assert report.find(code).severity == "warning"
    assert {f.code for f in report.errors} == {"empty_output", "echoes_instruction",
                                               "template_marker_in_output"}


def test_quality_checks_do_not_fire_on_clean_rows(report, planted):
    """Precision: the clean part of the planted set is not flagged by output checks."""
    planted_lines = set().union(*planted.lines.values())
    for code in ("empty_output", "echoes_instruction", "copies_input", "template_marker_in_output",
                 "refusal_boilerplate", "cut_off_output", "duplicate_rows", "conflicting_outputs",
                 "near_duplicate_instructions"):
        extra = flagged(report, code) - planted_lines
        assert not extra, f"{code} flagged clean lines {sorted(extra)[:5]}"


def test_clean_set_has_no_errors(clean_report):
    assert clean_report.errors == []
    assert clean_report["output_quality"].status == "ok"


def test_examples_point_at_source_lines(report, planted):
    f = report.find("duplicate_rows")
    assert 1 <= len(f.examples) <= 5
    for e in f.examples:
        assert e.source.line in planted.lines["duplicate"]
        assert e.other is not None and e.other.line < e.source.line  # the earlier copy


def test_json_shape(report):
    d = json.loads(json.dumps(report.to_dict()))
    assert list(d) == ["size", "task_diversity", "phrasing_diversity", "output_quality",
                       "contamination"]
    for lever in d.values():
        assert {"verdict", "status", "findings"} <= set(lever)
        for f in lever["findings"]:
            assert f["severity"] in ("error", "warning", "info")
            assert 0 <= f["share"] <= 1 and len(f["examples"]) <= 5
    assert d["contamination"]["status"] == "skipped"
