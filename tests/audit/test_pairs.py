"""`audit` on a preference file: planted duplicate, repeated and contradicting pairs are found
(exactly those rows), the length bias is flagged only when it is large and not chance, eval prompts
in training are caught, and the CLI prints the usual report (or JSON)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from instruct_tune.audit.pairs import BIAS_SHARE, BIAS_Z, audit_pairs, length_lever
from instruct_tune.cli import main
from instruct_tune.data.pair_inspect import length_bias
from instruct_tune.data.pairs import load_pairs
from tests.conftest import get_tokenizer
from tests.tiny import WORDS


def sentence(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi))) + "."


def clean_rows(n: int, seed: int = 0) -> list[dict]:
    """n pairs on distinct prompts, answers of random lengths (no bias)."""
    rng = random.Random(seed)
    return [{"instruction": f"Task {i}: {sentence(rng, 4, 9)}", "chosen": sentence(rng, 3, 20),
             "rejected": sentence(rng, 3, 20)} for i in range(n)]


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_planted_pair_problems_are_found_exactly(tmp_path):
    rows = clean_rows(60)
    rows += [dict(rows[3]), dict(rows[4], chosen=rows[4]["chosen"].upper())]  # lines 61, 62: copies
    rows += [dict(rows[7], chosen=rows[7]["rejected"], rejected=rows[7]["chosen"])]  # 63 contradicts 8
    rows += [dict(rows[9], rejected=f"Other answer {k}.") for k in range(12)]  # lines 64-75: prompt of 10
    report = audit_pairs(load_pairs(write(tmp_path / "p.jsonl", rows)).records)

    dup = report.find("duplicate_pairs")
    assert [s.line for s in dup.rows] == [61, 62]  # case and spacing ignored, as for SFT rows
    assert {(e.source.line, e.other.line) for e in dup.examples} == {(61, 4), (62, 5)}
    contra = report.find("contradicting_pairs")
    assert sorted(s.line for s in contra.rows) == [8, 63]
    repeated = report.find("repeated_prompts")
    assert repeated.stats == {"prompts": 4, "max_pairs": 13}  # 4, 5, 8 twice; 10 thirteen times
    assert repeated.severity == "warning"  # 13 of 75 pairs on one prompt
    assert report["pairs"].stats["distinct_prompts"] == 60
    assert report["pairs"].status == "warning" and not report.errors


def test_a_clean_set_has_no_pair_findings(tmp_path):
    report = audit_pairs(load_pairs(write(tmp_path / "p.jsonl", clean_rows(80))).records)
    assert report["pairs"].findings == [] and report["pairs"].status == "ok"
    assert report["length_bias"].status == "ok"
    assert report["contamination"].status == "skipped"


def test_a_few_repeated_prompts_are_information(tmp_path):
    rows = clean_rows(100) + [dict(r, rejected="Another one.") for r in clean_rows(100)[:3]]
    finding = audit_pairs(load_pairs(write(tmp_path / "p.jsonl", rows)).records).find("repeated_prompts")
    assert finding.severity == "info" and finding.count == 6


def biased(n: int, share_longer: float, seed: int = 0) -> list[dict]:
    """n pairs whose chosen answer is the longer one in `share_longer` of them."""
    rng = random.Random(seed)
    rows = []
    for r in clean_rows(n, seed):
        short, long = sentence(rng, 3, 6), sentence(rng, 10, 18)
        c, j = (long, short) if rng.random() < share_longer else (short, long)
        rows.append(dict(r, chosen=c, rejected=j))
    return rows


@pytest.mark.parametrize("n,share,flagged,direction", [
    (300, 0.75, True, "longer"), (300, 0.25, True, "shorter"), (300, 0.5, False, ""),
    (12, 0.75, False, "")])  # 12 pairs: even 9 of 12 longer is not beyond chance
def test_length_bias(tmp_path, n, share, flagged, direction):
    pairs = load_pairs(write(tmp_path / "p.jsonl", biased(n, share))).records
    lever = length_lever(pairs)
    finding = lever.findings[0]
    words = lever.stats["words"]
    measured = words["longer_when_different"]
    assert (finding.severity == "warning") == flagged, (measured, words["z"])
    if flagged:
        assert f"Chosen answers are {direction}" in finding.message
        assert measured >= BIAS_SHARE if direction == "longer" else measured <= 1 - BIAS_SHARE
    else:  # says why not: each of the two reasons that holds, and only those
        assert ("threshold" in finding.message) == (1 - BIAS_SHARE < measured < BIAS_SHARE)
        assert ("could be chance" in finding.message) == (abs(words["z"]) < BIAS_Z)
    # The stats are the counts of the data, checked here without length_bias.
    c = [len(p.chosen.split()) for p in pairs]
    r = [len(p.rejected.split()) for p in pairs]
    assert words["chosen_longer"] == pytest.approx(sum(a > b for a, b in zip(c, r, strict=True)) / n, abs=1e-4)
    assert words["chosen_mean"] == pytest.approx(sum(c) / n, abs=0.01)


def test_length_bias_hand_computed():
    b = length_bias([3, 5, 2, 2, 7], [1, 5, 4, 1, 7])  # longer, equal, shorter, longer, equal
    assert (b.chosen_longer, b.rejected_longer) == (0.4, 0.2)
    assert b.longer_when_different == pytest.approx(2 / 3)
    assert b.z == pytest.approx((2 - 1) / 3 ** 0.5)
    assert b.mean_difference == pytest.approx((19 - 18) / 5)


def test_tokens_and_too_long_pairs_with_a_tokenizer(tmp_path):
    rows = biased(200, 0.8) + [{"instruction": "Long one.", "chosen": "word " * 300, "rejected": "no"}]
    report = audit_pairs(load_pairs(write(tmp_path / "p.jsonl", rows)).records,
                         tokenizer=get_tokenizer("llama"), max_length=128)
    assert [s.line for s in report.find("too_long").rows] == [201]
    lever = report["length_bias"]
    assert lever.stats["tokens"]["pairs"] == 200  # the pairs that fit
    assert "(tokens)" in lever.verdict and lever.status == "warning"


def test_contamination_against_eval_pairs_and_records(tmp_path):
    rows = clean_rows(40)
    train = write(tmp_path / "train.jsonl", rows)
    eval_pairs = write(tmp_path / "eval_pairs.jsonl", [rows[5], *clean_rows(5, seed=9)])
    eval_sft = write(tmp_path / "eval.jsonl", [{"instruction": rows[6]["instruction"], "output": "x"}])
    ev = load_pairs(eval_pairs).records
    report = audit_pairs(load_pairs(train).records, eval_records=[p.record("chosen") for p in ev])
    assert [s.line for s in report.find("contaminated_exact").rows] == [1]
    assert report["contamination"].stats["eval_rows"] == 6
    for eval_file in (eval_pairs, eval_sft):  # an eval prompt in training is an error: --strict
        assert main(["audit", str(train), "--eval-data", str(eval_file), "--strict"]) == 1
    clean_eval = write(tmp_path / "clean.jsonl", clean_rows(5, seed=9))
    assert main(["audit", str(train), "--eval-data", str(clean_eval), "--strict"]) == 0


def test_cli_report_and_json(tmp_path, capsys):
    rows = biased(200, 0.8)
    rows.append(dict(rows[0]))
    path = write(tmp_path / "p.jsonl", rows)
    assert main(["audit", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert list(report) == ["pairs", "length_bias", "contamination"]
    assert report["pairs"]["findings"][0]["code"] == "duplicate_pairs"
    assert report["pairs"]["findings"][0]["lines"] == [201]
    assert report["length_bias"]["status"] == "warning"
    assert main(["audit", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Audit of" in out and "(preference pairs)" in out
    for title in ("Pairs", "Length bias", "Contamination", "What this audit cannot tell"):
        assert title in out
    assert "p.jsonl:201" in out
    assert not any(line != line.rstrip() for line in out.splitlines())  # piped: nothing padded
