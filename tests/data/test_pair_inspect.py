"""`inspect` on a preference file: the prompt once, the chosen answer trained and the rejected one
marked, each with its stop token and decoded in context; --json ids are the training ids; the
summary counts kept/dropped pairs and the length bias."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from instruct_tune.cli import main
from instruct_tune.data.inspect import TRAINED_STYLE, _special_names
from instruct_tune.data.pair_inspect import REJECTED_STYLES, render_pair
from instruct_tune.data.pair_tokenize import build_pair, build_pairs
from instruct_tune.data.pairs import PairRecord, load_pairs
from instruct_tune.data.records import Message, Source
from instruct_tune.data.templates import get_template
from tests.conftest import get_tokenizer

ROWS = [{"prompt": "Name a color.", "chosen": "Blue.", "rejected": "I like turtles very much."},
        {"prompt": "Add the numbers 2 and 3.", "chosen": "5", "rejected": "23"},
        {"prompt": "Say hi.", "chosen": "Hi!" + " there" * 80, "rejected": "No."},
        {"prompt": "Pick one.", "chosen": "the cat", "rejected": "the dog and the cat"}]


@pytest.fixture(scope="module")
def tok_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tokenizers")
    out = {}
    for kind in ("llama", "gpt2", "chatml"):
        get_tokenizer(kind).save_pretrained(root / kind)
        out[kind] = root / kind
    return out


def pair_file(tmp_path: Path, rows: list[dict] = ROWS) -> Path:
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_view_shows_prompt_once_and_both_answers(tmp_path, tok_dirs, capsys):
    data = pair_file(tmp_path)
    code = main(["inspect", str(data), "--model", str(tok_dirs["llama"]), "-n", "2",
                 "--max-length", "64", "--cache-dir", "none"])
    out = capsys.readouterr().out
    assert code == 0
    first = out.split("── pairs.jsonl:2")[0]
    assert first.count("Name a color.") == 1  # the shared prompt, once
    # Piped: no colour, so each answer is bracketed; the stop token is inside, trained.
    assert "✓ chosen" in first and "\n⟦Blue.⟨eos⟩⟧\n" in first
    assert "✗ rejected" in first and "\n⟦I like turtles very much.⟨eos⟩⟧\n" in first
    assert first.index("✓ chosen") < first.index("⟦Blue.") < first.index("✗ rejected")
    assert "⟨bos⟩" in first and "### Response:" in first
    summary = out.split("── summary")[1]
    assert "4 pairs" in summary and "3 pairs" in summary  # loaded, kept
    assert "1 × prompt + longer answer over --max-length 64 — first at" in summary and "pairs.jsonl:3" in summary
    assert "chosen longer in" in summary


def test_json_rows_are_the_training_ids(tmp_path, tok_dirs, capsys):
    data = pair_file(tmp_path)
    assert main(["inspect", str(data), "--model", str(tok_dirs["gpt2"]), "--json",
                 "--max-length", "64", "--cache-dir", "none"]) == 0
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines()]
    want = build_pairs(load_pairs(data).records, get_tokenizer("gpt2"), "alpaca", max_length=64,
                       cache_dir="none").examples
    assert [r["line"] for r in rows] == [1, 2, 4]  # every kept pair (no -n: all of them)
    for r, p in zip(rows, want, strict=True):
        assert (r["prompt_ids"], r["chosen_ids"], r["rejected_ids"]) == (p.prompt_ids, p.chosen_ids, p.rejected_ids)
        assert r["chosen"].endswith("<|endoftext|>") and r["rejected"].endswith("<|endoftext|>")
    assert "dropped" in captured.err and "bias" in captured.err  # the summary goes to stderr


def test_pair_columns_pass_the_option_check(tmp_path, tok_dirs, capsys):
    path = tmp_path / "mapped.jsonl"
    path.write_text(json.dumps({"q": "Name a color.", "good": "Blue.", "bad": "Rocks."}) + "\n")
    assert main(["inspect", str(path), "--model", str(tok_dirs["llama"]), "--cache-dir", "none",
                 "--columns", "prompt=q,chosen=good,rejected=bad"]) == 0
    assert "⟦Blue.⟨eos⟩⟧" in capsys.readouterr().out


CASES = [("llama", "alpaca"), ("llama", "raw"), ("gpt2", "alpaca"), ("gpt2", "raw"),
         ("chatml", "alpaca"), ("chatml", "chatml"), ("chatml", "model")]
TEXT = st.text(st.characters(exclude_categories=("Cs", "Cc")), min_size=1, max_size=12).filter(str.strip)


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(case=st.sampled_from(CASES), prompt=TEXT, chosen=TEXT, rejected=TEXT)
def test_rendered_parts_are_the_decoded_ids_in_context(case, prompt, chosen, rejected):
    """Prompt text + an answer's text is the decoding of prompt + that answer's ids (special
    tokens shown by name), so no character is lost or moved across the boundary; the chosen
    answer is styled as trained, the rejected one as rejected."""
    tok = get_tokenizer(case[0])
    tmpl = get_template(case[1], tok)
    if chosen.strip() == rejected.strip():
        return
    pair = build_pair(PairRecord((Message("user", prompt),), chosen, rejected, Source("m", 1)),
                      tok, tmpl, max_length=10_000)
    if pair is None:  # e.g. the stop token's text inside an answer: dropped, never shown
        return
    specials = _special_names(tok, tmpl)

    def shown(ids: list[int]) -> str:
        text = tok.decode(ids, skip_special_tokens=False)
        for tid, name in specials.items():
            text = text.replace(tok.convert_ids_to_tokens(tid), name)
        return text

    p, c, r = render_pair(pair, tok, specials)
    assert p.plain + c.plain == shown(pair.prompt_ids + pair.chosen_ids)
    assert p.plain + r.plain == shown(pair.prompt_ids + pair.rejected_ids)
    assert c.plain.endswith(specials[pair.chosen_ids[-1]]) and r.plain.endswith(specials[pair.rejected_ids[-1]])
    assert {s.style for s in c.spans} <= {TRAINED_STYLE, "bold black on green"}
    assert {s.style for s in r.spans} <= set(REJECTED_STYLES)
    pm, cm, rm = render_pair(pair, tok, specials, marks=True)
    assert pm.plain == p.plain and cm.plain == f"⟦{c.plain}⟧" and rm.plain == f"⟦{r.plain}⟧"
