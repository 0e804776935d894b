"""The eval report in a file or pipe: samples as labelled lines (not a table as wide as four
texts), nothing wrapped or padded; a terminal keeps the tables."""

from __future__ import annotations

import io

from rich.console import Console

from instruct_tune.cli import main
from instruct_tune.evaluate.report import print_report
from tests.evaluate import tuned

LONG = ("The quick brown fox jumps over the lazy dog while the patient reader checks that this "
        "sentence, which is longer than any terminal, stays on a single line when piped. ") * 2


def metrics(**extra) -> dict:
    return {"n": 2, "stop_rate": 0.5, "template_leak_rate": 0.0, "exact_match": 0.5,
            "normalized_exact_match": 0.5, "rouge_l": 0.75, "mean_length": 12.0, "p95_length": 20.0,
            "by_task": {"qa": {"n": 1, "stop_rate": 1.0, "template_leak_rate": 0.0,
                               "exact_match": 1.0, "rouge_l": 1.0}}, **extra}


def report() -> dict:
    sample = {"instruction": "Summarise the text. " + LONG[:150], "input": "line one\nline two  ",
              "reference": LONG[:200], "output": "A [bold]fox[/] jumps.\n\nOver the dog.",
              "stopped": True, "base_output": LONG[:230], "base_stopped": False}
    return {"model": "tuned", "template": "alpaca", "max_new_tokens": 32,
            **metrics(), "base": {"model": "base", **metrics()}, "samples": [sample]}


def test_piped_samples_are_unwrapped_labelled_lines(tmp_path):
    path = tmp_path / "report.txt"
    with open(path, "w") as f:  # a real file, narrower than every text: nothing may wrap
        print_report(report(), Console(file=f, width=60))
    lines = path.read_text().splitlines()
    assert not [line for line in lines if line != line.rstrip()]
    s = report()["samples"][0]
    for label, text in [("instruction", s["instruction"]), ("reference", s["reference"]),
                        ("base", s["base_output"] + " [no stop]"), ("input", "line one"),
                        ("tuned", "A [bold]fox[/] jumps.")]:
        assert any(line.lstrip(" 1.").startswith(f"{label}: {text}") for line in lines), label
    indent = next(i for i, line in enumerate(lines) if line.lstrip().startswith("input: "))
    assert lines[indent + 1].strip() == "line two" and lines[indent + 1].startswith("   " + " " * 7)
    assert "per task (base → tuned)" in lines and "sample generations" in lines
    assert not any("┃ instruction" in line for line in lines)  # no samples table


def test_a_terminal_keeps_the_samples_table():
    buf = io.StringIO()
    print_report(report(), Console(file=buf, force_terminal=True, width=100, color_system=None))
    text = buf.getvalue()
    assert "┃ instruction" in text and max(map(len, text.splitlines())) <= 100


def test_eval_command_piped(base_dir, eval_file, capsys):
    """A model that never stops: long outputs, '[no stop]' on each, all on one line per text."""
    assert main(["eval", "--model", str(base_dir), "--data", str(eval_file),
                 "--max-new-tokens", "24", "--samples", "5"]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert not [line for line in lines if line != line.rstrip()]
    assert len([line for line in lines if line.startswith("   output: ")]) == len(tuned.RECORDS)
    assert text.count("[no stop]") == len(tuned.RECORDS)
