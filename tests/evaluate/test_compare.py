"""Before/after evaluation: API report, `instruct-tune eval` JSON/--out/rich output, Markdown,
and a bad --out caught before any model loads."""

from __future__ import annotations

import json
import os
import tempfile

import pytest

from instruct_tune.cli import main
from instruct_tune.commands.eval import check_out_file
from instruct_tune.data.records import Record, Source
from instruct_tune.errors import DataError
from instruct_tune.evaluate.compare import evaluate
from instruct_tune.evaluate.generate import Generator
from instruct_tune.evaluate.report import to_markdown
from tests.evaluate import tuned

KEYS = {"n", "stop_rate", "template_leak_rate", "exact_match", "normalized_exact_match", "rouge_l",
        "mean_length", "p95_length", "by_task"}


@pytest.fixture(scope="module")
def report(tuned_dir, base_dir):
    return evaluate(tuned_dir, tuned.RECORDS, compare=base_dir, max_new_tokens=12, batch_size=2)


def test_tuned_beats_base(report):
    n = len(tuned.RECORDS)
    assert set(report) >= KEYS and set(report["base"]) >= KEYS
    assert report["n"] == report["base"]["n"] == n
    assert report["stop_rate"] == 1.0 and report["exact_match"] == 1.0 and report["rouge_l"] == 1.0
    assert report["base"]["stop_rate"] < 1.0 and report["base"]["exact_match"] == 0.0
    assert report["delta"]["exact_match"] == pytest.approx(1.0)
    assert report["template"] == "alpaca"


def test_per_task_and_rows(report):
    tasks = [r.meta["task"] for r in tuned.RECORDS]
    assert set(report["by_task"]) == set(report["base"]["by_task"]) == set(tasks)
    assert {t: m["n"] for t, m in report["by_task"].items()} == {t: tasks.count(t) for t in set(tasks)}
    assert [r["output"] for r in report["rows"]] == [r.output for r in tuned.RECORDS]
    assert all(not row["base_stopped"] for row in report["rows"] if row["base_length"] == 12)
    assert len(report["samples"]) == 3


def test_markdown_has_the_side_by_side(report):
    md = to_markdown(report)
    assert "| metric | base | tuned | Δ |" in md
    assert "+100.0%" in md  # exact match went from 0 to 100%
    assert "### Per task" in md and "| qa | 3 |" in md
    assert "What is the capital of France?" in md


def test_cli_json_and_out(tuned_dir, base_dir, eval_file, tmp_path, capsys):
    out = tmp_path / "sub" / "report.json"
    code = main(["eval", "--model", str(tuned_dir), "--data", str(eval_file), "--compare", str(base_dir),
                 "--json", "--out", str(out), "--max-new-tokens", "8"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert {"n", "stop_rate", "template_leak_rate", "exact_match", "rouge_l", "by_task"} <= set(printed)
    assert {"n", "stop_rate", "template_leak_rate", "exact_match", "rouge_l", "by_task"} <= set(printed["base"])
    assert printed["exact_match"] == 1.0 and set(printed["by_task"]) == {"qa", "count"}
    written = json.loads(out.read_text())
    assert printed == written  # stdout has the per-row generations too, for `| jq`
    assert len(written["rows"]) == len(tuned.RECORDS)
    assert written["rows"][0]["source"].endswith("eval.jsonl:1")


def test_cli_tables(tuned_dir, eval_file, capsys):
    assert main(["eval", "--model", str(tuned_dir), "--data", str(eval_file), "--max-new-tokens", "8"]) == 0
    text = capsys.readouterr().out
    assert "stops" in text and "ROUGE-L" in text and "100.0%" in text and "per task" in text
    assert "Paris" in text


def test_cli_needs_model_and_data(eval_file, capsys):
    assert main(["eval", "--data", str(eval_file)]) == 2
    assert "--model" in capsys.readouterr().err


def test_prompt_longer_than_context_names_the_row(tuned_dir):
    long = Record.alpaca("word " * 600, "x", source=Source("held.jsonl", 7))
    with pytest.raises(DataError, match=r"held.jsonl:7"):
        evaluate(tuned_dir, [tuned.RECORDS[0], long], max_new_tokens=4)
    report = evaluate(tuned_dir, [tuned.RECORDS[0], long], max_new_tokens=4, skip_invalid=True)
    assert report["n"] == 1


def test_tables_survive_zero_deltas_and_brackets(report):
    from rich.console import Console

    from instruct_tune.evaluate.report import print_report

    same = {**report, "base": {**report, "model": "base[1]"}, "model": "[bold]tuned"}
    same["samples"] = [{**report["samples"][0], "output": "[/] [red]x", "base_output": "[b]"}]
    console = Console(record=True, width=200)
    print_report(same, console)
    text = console.export_text()
    assert "+0.0%" in text and "[/] [red]x" in text and "[bold]tuned" in text


def test_compare_when_tuning_added_the_template_tokens(base_dir, tmp_path):
    """chatml on a llama base: tuning added <|im_start|>/<|im_end|>, the base tokenizer lacks them."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from instruct_tune.data.templates import get_template

    tok = AutoTokenizer.from_pretrained(base_dir)
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    model.resize_token_embeddings(len(tok))
    model.save_pretrained(tmp_path / "tuned")
    tok.save_pretrained(tmp_path / "tuned")
    get_template("chatml").save(tmp_path / "tuned")
    report = evaluate(tmp_path / "tuned", tuned.RECORDS[:2], compare=base_dir, max_new_tokens=4)
    assert report["template"] == "chatml" and report["base"]["n"] == 2


@pytest.fixture
def no_generation(monkeypatch):
    """Fail the test if eval gets as far as loading a model."""
    def load(*args, **kwargs):
        raise AssertionError("a model was loaded before --out was checked")
    monkeypatch.setattr(Generator, "load", load)


def eval_out(tuned_dir, eval_file, out) -> int:
    return main(["eval", "--model", str(tuned_dir), "--data", str(eval_file), "--out", str(out),
                 "--max-new-tokens", "4"])


@pytest.mark.parametrize("case", ["directory", "slash", "under_a_file"])
def test_bad_out_fails_before_any_model_loads(tuned_dir, eval_file, tmp_path, capsys, no_generation,
                                              case):
    (tmp_path / "notes.txt").write_text("keep me")
    out, hint = {"directory": (tmp_path, "file name"),
                 "slash": (f"{tmp_path / 'reports'}/", "file name"),
                 "under_a_file": (tmp_path / "notes.txt" / "eval.json", "is a file")}[case]
    assert eval_out(tuned_dir, eval_file, out) == 2
    message = " ".join(capsys.readouterr().err.split())  # undo line wrapping
    assert "--out" in message and str(out) in message and hint in message
    assert (tmp_path / "notes.txt").read_text() == "keep me" and not (tmp_path / "reports").exists()


def test_out_in_a_directory_nobody_may_write_fails_early(tuned_dir, eval_file, capsys, no_generation):
    try:  # sysfs refuses new files even to root, where chmod'ed directories would not
        fd, probe = tempfile.mkstemp(dir="/sys")
    except OSError:
        pass
    else:
        os.close(fd)
        os.unlink(probe)
        pytest.skip("/sys is writable here")
    if not os.path.isdir("/sys"):
        pytest.skip("no /sys")
    assert eval_out(tuned_dir, eval_file, "/sys/instruct-tune/eval.json") == 2
    message = " ".join(capsys.readouterr().err.split())
    assert "Cannot write --out /sys/instruct-tune/eval.json" in message and "writable" in message


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root may write anywhere, whatever the permissions")
@pytest.mark.parametrize("target", ["dir", "file"])
def test_out_without_permission_fails_early(tuned_dir, eval_file, tmp_path, capsys, no_generation,
                                            target):
    locked = tmp_path / "locked"
    locked.mkdir()
    out = locked / "eval.json"
    if target == "file":
        out.write_text("old")
        out.chmod(0o444)
    else:
        locked.chmod(0o555)
    try:
        assert eval_out(tuned_dir, eval_file, out) == 2
    finally:
        locked.chmod(0o755)
    assert "Cannot write --out" in " ".join(capsys.readouterr().err.split())


def test_good_out_is_checked_without_leaving_anything(tuned_dir, eval_file, tmp_path):
    out = tmp_path / "new" / "deeper" / "eval.json"
    check_out_file(str(out))
    assert list(tmp_path.iterdir()) == []
    existing = tmp_path / "old.json"
    existing.write_text("old")
    check_out_file(str(existing))
    assert existing.read_text() == "old"  # checked, not truncated (eval replaces it only at the end)
