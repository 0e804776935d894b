"""The few-shot baseline (eval --compare BASE --few-shot K): what the base model is prompted with
(K worked examples in the same template, each a finished turn; never an eval row; the same
examples for every row of a task; fewer when the context is short), where the examples come from
by default, and the three-way report."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from instruct_tune.cli import main
from instruct_tune.data.records import Record
from instruct_tune.errors import ConfigError
from instruct_tune.evaluate import compare
from instruct_tune.evaluate.compare import evaluate
from instruct_tune.evaluate.fewshot import (
    ShotsSource,
    load_shots,
    pick_shots,
    shots_source,
    with_shots,
)
from instruct_tune.evaluate.generate import Generator
from instruct_tune.evaluate.report import to_markdown
from tests.evaluate import tuned

SHOTS = [Record.alpaca(f"Say the number {w}.", w, task="qa") for w in ("one", "two", "three")] + [
    Record.alpaca("Count to two.", "one two", task="count"),
    Record.alpaca("Reverse the word.", "god", input="dog", task="count"),
]


@pytest.fixture(scope="module")
def shots_file(tmp_path_factory):
    return tuned.write_jsonl(SHOTS, tmp_path_factory.mktemp("shots") / "shots.jsonl")


@pytest.fixture
def base_prompts(monkeypatch):
    """Every prompt batch the evaluation hands to a model, decoded, per model name."""
    seen: dict[str, list[str]] = {}
    real = Generator.generate

    def spy(self, prompts, **kw):
        seen.setdefault(self.name, []).append(
            [self.tokenizer.decode(p, skip_special_tokens=False) for p in prompts])
        return real(self, prompts, **kw)

    monkeypatch.setattr(Generator, "generate", spy)
    return seen


def test_pick_shots_same_task_fixed_and_seeded():
    rows = [Record.alpaca("q", "a", task="qa"), Record.alpaca("r", "b", task="qa"),
            Record.alpaca("s", "c", task="count"), Record.alpaca("t", "d", task="other")]
    picks = pick_shots(SHOTS, rows, 2, seed=0)
    assert picks[0] == picks[1] and all(s.meta["task"] == "qa" for s in picks[0])
    assert all(s.meta["task"] == "count" for s in picks[2])  # the pool has 2 of that task
    assert len(picks[3]) == 2  # no such task in the pool: any 2
    assert picks == pick_shots(SHOTS, rows, 2, seed=0)
    assert any(pick_shots(SHOTS, rows, 2, seed=s)[3] != picks[3] for s in range(1, 20))
    assert [len(p) for p in pick_shots(SHOTS, rows, 3)] == [3, 3, 3, 3]  # count has 2 < 3: any


def test_eval_rows_are_never_shots(tmp_path):
    eval_rows = [SHOTS[0], Record.alpaca("Reverse the word.", "other answer", input="dog")]
    pool, left_out = load_shots(ShotsSource(str(tuned.write_jsonl(SHOTS, tmp_path / "s.jsonl"))),
                                eval_rows)
    assert left_out == 2 and len(pool) == len(SHOTS) - 2
    prompts = {(r.instruction, r.input) for r in pool}
    assert not prompts & {(r.instruction, r.input) for r in eval_rows}  # whatever the answer
    with pytest.raises(ConfigError, match="no usable worked examples"):
        load_shots(ShotsSource(str(tuned.write_jsonl(SHOTS, tmp_path / "t.jsonl"))), SHOTS)


def test_examples_are_finished_turns_in_the_same_template(tuned_dir):
    gen = Generator.load(tuned_dir)
    row = tuned.RECORDS[0]
    text = gen.tokenizer.decode(gen.encode(with_shots(SHOTS[:2], row)), skip_special_tokens=False)
    zero = gen.tokenizer.decode(gen.encode(row.prompt_messages()), skip_special_tokens=False)
    stop = gen.tokenizer.convert_ids_to_tokens(gen.stop_ids[0])
    for shot in SHOTS[:2]:
        assert f"### Instruction:\n{shot.instruction}\n\n### Response:\n{shot.output}{stop}" in text
    assert text.index(SHOTS[0].instruction) < text.index(SHOTS[1].instruction)
    assert text.endswith(zero.removeprefix(gen.tokenizer.bos_token or ""))
    assert text.count("### Response:") == 3


def test_three_way_report(tuned_dir, base_dir, shots_file, base_prompts):
    report = evaluate(tuned_dir, tuned.RECORDS, compare=base_dir, max_new_tokens=6,
                      batch_size=8, few_shot=2, shots=str(shots_file))
    shot = report["base_few_shot"]
    assert shot["k"] == 2 and shot["n"] == len(tuned.RECORDS) and shot["fewer_shots"] == 0
    assert set(shot["by_task"]) == set(report["by_task"])
    assert report["shots"]["pool"] == len(SHOTS) and report["shots"]["source"] == str(shots_file)
    for key in ("stop_rate", "exact_match", "template_leak_rate", "mean_length"):
        assert report["delta_few_shot"][key] == pytest.approx(report[key] - shot[key])
    rows = report["rows"]
    assert all(r["few_shot_k"] == 2 and "few_shot_output" in r for r in rows)
    assert shot["stop_rate"] == pytest.approx(sum(r["few_shot_stopped"] for r in rows) / len(rows))
    # The base model saw two passes: zero-shot prompts, then the same questions after 2 examples.
    zero, few = base_prompts[str(base_dir)]
    assert len(zero) == len(few) == len(tuned.RECORDS)
    for prompt in few:
        assert prompt.count("### Response:") == 3
        assert not any(r.output in prompt.split("### Response:")[1] for r in tuned.RECORDS
                       if len(r.output) > 3)  # no eval answer leaks in through an example

    md = to_markdown(report)
    assert "| metric | base | base 2-shot | tuned | Δ | Δ vs 2-shot |" in md
    line = next(ln for ln in md.splitlines() if ln.startswith("| exact match |"))
    cells = [c.strip() for c in line.strip("|").split("|")][1:4]
    assert cells == [f"{v * 100:.1f}%" for v in (report["base"]["exact_match"],
                                                  shot["exact_match"], report["exact_match"])]
    qa = next(ln for ln in md.splitlines() if ln.startswith("| qa |"))
    assert re.search(r"\d+\.\d% / \d+\.\d% → \d+\.\d%", qa)


def test_short_context_gets_fewer_examples(tuned_dir, base_dir, tmp_path, base_prompts):
    many = [Record.alpaca(" ".join(["word"] * 40) + f" {i}", " ".join(["yes"] * 30))
            for i in range(12)]
    shots = tuned.write_jsonl(many, tmp_path / "long.jsonl")
    report = evaluate(tuned_dir, tuned.RECORDS, compare=base_dir, max_new_tokens=8,
                      batch_size=8, few_shot=12, shots=str(shots))
    base = Generator.load(base_dir)
    assert 0 < report["base_few_shot"]["fewer_shots"] <= len(tuned.RECORDS)
    assert report["base_few_shot"]["mean_shots"] < 12
    for prompt in base_prompts[str(base_dir)][1]:
        assert len(base.tokenizer(prompt, add_special_tokens=False).input_ids) <= 512 - 8 + 2


def test_default_shots_are_the_runs_training_data(tmp_path, shots_file):
    run = tmp_path / "run"
    (run / "final").mkdir(parents=True)
    (run / "checkpoints" / "step-5").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(
        {"model": "base", "data": str(shots_file), "out": str(run), "seed": 7}))
    for model in (run / "final", run / "checkpoints" / "step-5"):
        src = shots_source(model, None)
        assert (src.spec, src.seed, src.origin) == (str(shots_file), 7, str(run / "config.yaml"))
    assert shots_source(run / "final", "other.jsonl").spec == "other.jsonl"
    with pytest.raises(ConfigError, match="pass --shots FILE"):
        shots_source(tmp_path / "model", None)


def test_cli_refuses_before_loading(eval_file, tmp_path, capsys, monkeypatch):
    def no_loading(*a, **k):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(compare.Generator, "load", no_loading)
    assert main(["eval", str(tmp_path), "--data", str(eval_file), "--few-shot", "2"]) == 2
    assert "--few-shot is a baseline of the base model: give it with --compare" in \
        capsys.readouterr().err
    assert main(["eval", str(tmp_path), "--data", str(eval_file), "--compare", str(tmp_path),
                 "--few-shot", "2"]) == 2
    assert "pass --shots FILE" in capsys.readouterr().err


def test_cli_json_has_the_baseline(tuned_dir, base_dir, eval_file, shots_file, capsys):
    assert main(["eval", str(tuned_dir), "--data", str(eval_file), "--compare", str(base_dir),
                 "--few-shot", "1", "--shots", str(shots_file), "--json",
                 "--max-new-tokens", "4"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["base_few_shot"]["k"] == 1 and report["rows"][0]["few_shot_k"] == 1
