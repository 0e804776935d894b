"""Rows over --max-length: the advice says "raise --max-length" only where that can help, and
says the rows cannot fit the model at all when the limit is already its whole context."""

from __future__ import annotations

import json

import pytest

from instruct_tune.audit.report import audit
from instruct_tune.cli import main
from instruct_tune.data.records import Record, Source
from tests.audit.synth import Synth

CANNOT = "cannot fit this model at all"


@pytest.fixture(scope="module")
def records():
    """Half the rows far longer than 512 tokens (the tiny models' context), half short."""
    syn = Synth(3)
    return [Record.alpaca(syn.instruction(), syn.text(900 if i % 2 else 30),
                          source=Source("long.jsonl", i + 1)) for i in range(24)]


def too_long(report):
    f = report.find("too_long")
    assert f is not None, "no too_long finding: the planted rows should not fit"
    return f


def test_limit_at_the_context_says_the_rows_cannot_fit(records, get_tokenizer_llama):
    f = too_long(audit(records, tokenizer=get_tokenizer_llama, max_length=512, context=512))
    assert CANNOT in f.advice and "Raise --max-length" not in f.advice
    assert "whole context" in f.message


def test_limit_below_the_context_says_how_far_to_raise(records, get_tokenizer_llama):
    f = too_long(audit(records, tokenizer=get_tokenizer_llama, max_length=128, context=512))
    assert f.advice.startswith("Raise --max-length") and "up to 512 tokens" in f.advice
    assert CANNOT not in f.advice and "whole context" not in f.message


def test_unknown_context_keeps_the_general_advice(records, get_tokenizer_llama):
    f = too_long(audit(records, tokenizer=get_tokenizer_llama, max_length=512))
    assert f.advice.startswith("Raise --max-length") and CANNOT not in f.advice


def _advice(capsys, *args) -> str:
    assert main(["audit", *args, "--json"]) == 0
    findings = json.loads(capsys.readouterr().out)["output_quality"]["findings"]
    return next(f["advice"] for f in findings if f["code"] == "too_long")


def test_cli_reads_the_context_from_the_model(records, model_dirs, tmp_path, capsys):
    path = tmp_path / "long.jsonl"
    path.write_text("".join(json.dumps({"instruction": r.instruction, "output": r.output}) + "\n"
                            for r in records))
    model = str(model_dirs["llama"])  # context 512; the default --max-length 2048 is lowered to it
    assert CANNOT in _advice(capsys, str(path), "--model", model)
    assert "up to 512 tokens" in _advice(capsys, str(path), "--model", model, "--max-length", "64")


def test_stories260k_on_the_shared_data(stories_dir, shared_data, capsys):
    data = shared_data / "self_instruct_user_oriented.jsonl"
    if not data.is_file():
        pytest.skip(f"{data} not present")
    assert CANNOT in _advice(capsys, str(data), "--model", str(stories_dir))
