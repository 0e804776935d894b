"""`instruct-tune inspect`: the coloured view, --json rows scripts can check, and the summary."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from instruct_tune.cli import main
from tests.conftest import get_tokenizer

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "alpaca_sample.jsonl"


@pytest.fixture(scope="module")
def tok_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tokenizers")
    out = {}
    for kind in ("llama", "gpt2", "chatml"):
        get_tokenizer(kind).save_pretrained(root / kind)
        out[kind] = root / kind
    return out


def data_file(tmp_path: Path, rows: list[dict]) -> Path:
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


ROWS = [{"instruction": "Name a color.", "output": "Blue."},
        {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"},
        {"instruction": "word " * 80, "output": "too long"},
        {"instruction": "Say hi.", "output": "Hi!"}]


def test_view_shows_rows_specials_and_summary(tmp_path, tok_dirs, capsys):
    data = data_file(tmp_path, ROWS)
    code = main(["inspect", str(data), "--model", str(tok_dirs["llama"]), "-n", "2",
                 "--max-length", "64", "--cache-dir", "none"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.count("d.jsonl:") >= 3  # two row headers + the dropped row's location
    assert "### Instruction:\nName a color." in out
    # Captured output has no colour, so the trained span is bracketed: the reply and its EOS only.
    assert "### Response:\n⟦Blue.⟨eos⟩⟧" in out and out.count("⟦") == out.count("⟧") >= 3
    assert "⟨bos⟩" in out
    assert "3 rows" in out
    assert "dropped" in out and "longer than --max-length 64" in out and "d.jsonl:3" in out
    assert "trained" in out and "p50" in out


@pytest.mark.parametrize("kind,template", [("gpt2", "alpaca"), ("chatml", "model"), ("llama", "raw")])
def test_json_rows_have_exact_masks(tmp_path, tok_dirs, capsys, kind, template):
    data = data_file(tmp_path, ROWS)
    code = main(["inspect", str(data), "--model", str(tok_dirs[kind]), "--template", template,
                 "--json", "--max-length", "64", "--cache-dir", "none"])
    captured = capsys.readouterr()
    assert code == 0
    rows = [json.loads(line) for line in captured.out.splitlines()]
    assert [r["line"] for r in rows] == [1, 2, 4]  # every kept row (no -n: all of them)
    tok = get_tokenizer(kind)
    for r, src in zip(rows, [ROWS[0], ROWS[1], ROWS[3]], strict=True):
        ids, labels = r["input_ids"], r["labels"]
        trained = [i for i, y in enumerate(labels) if y != -100]
        assert labels[trained[0]:] == ids[trained[0]:]  # one trained span, at the end
        assert all(y == -100 for y in labels[:trained[0]])
        assert tok.decode(ids[trained[0]:-1]) == src["output"]
        assert ids[-1] == tok.eos_token_id
        assert src["instruction"] in r["text"] and r["text"].endswith(src["output"] + tok.eos_token)
    assert "dropped" in captured.err  # the summary goes to stderr with --json


def test_example_file_of_the_readme(tok_dirs, capsys):
    assert main(["inspect", str(EXAMPLE), "--model", str(tok_dirs["llama"]), "--cache-dir", "none"]) == 0
    out = capsys.readouterr().out
    assert "20 rows" in out and out.count("alpaca_sample.jsonl:") == 3


def test_user_errors_exit_2_without_traceback(tmp_path, tok_dirs, capsys):
    data = data_file(tmp_path, ROWS)
    assert main(["inspect", str(data), "--cache-dir", "none"]) == 2
    assert "--model" in capsys.readouterr().err
    assert main(["inspect", str(data), "--model", str(tok_dirs["gpt2"]), "--template", "chatml",
                 "--cache-dir", "none"]) == 2
    assert "<|im_end|>" in capsys.readouterr().err
    assert main(["inspect", str(data), "--model", str(tok_dirs["gpt2"]), "--max-length", "64",
                 "--truncation", "error", "--cache-dir", "none"]) == 2
    err = capsys.readouterr().err
    assert "d.jsonl:3" in err and "Traceback" not in err


def test_summary_reports_invalid_rows_with_their_line(tmp_path, tok_dirs, capsys):
    data = data_file(tmp_path, [ROWS[0], {"instruction": "", "output": "x"}, ROWS[3]])
    assert main(["inspect", str(data), "--model", str(tok_dirs["gpt2"]), "--skip-invalid",
                 "--cache-dir", "none"]) == 0
    out = capsys.readouterr().out
    assert "1 row skipped" in out and "[instruction]" in out and "d.jsonl:2" in out
    assert re.search(r"^loaded +3 rows$", out, re.M) and re.search(r"^kept +2 rows$", out, re.M), out


@pytest.mark.parametrize("command", ["inspect", "audit"])
def test_unmapped_input_like_column_is_warned_about(command, tmp_path, tok_dirs, capsys):
    data = tmp_path / "qa.jsonl"
    data.write_text('{"question": "Opposite?", "context": "night", "answer": "day"}\n'
                    '{"question": "Sum?", "context": "2 3", "answer": "5"}\n')
    extra = ["--model", str(tok_dirs["llama"]), "--cache-dir", "none"] if command == "inspect" else []
    assert main([command, str(data), "--columns", "instruction=question,output=answer", *extra]) == 0
    err = capsys.readouterr().err
    assert "'context' is not mapped to input" in err and "input=context" in err


def test_left_truncation_is_summarised_with_what_the_prompt_kept(tmp_path, tok_dirs, capsys):
    data = data_file(tmp_path, ROWS)  # row 3's 80-word instruction is cut from the left
    assert main(["inspect", str(data), "--model", str(tok_dirs["llama"]), "--max-length", "24",
                 "--truncation", "left", "--cache-dir", "none", "--json"]) == 0
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    cut = [r for r in rows if r["num_tokens"] == 24]
    kept = min(next(i for i, y in enumerate(r["labels"]) if y != -100) for r in cut)
    assert f"up to {len(cut)} rows cut to --max-length 24" in err
    assert f"the shortest prompt left has {kept} tokens" in err
