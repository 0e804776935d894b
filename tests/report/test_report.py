"""`instruct-tune report RUN_DIR`: every section present, every number on the page equal to the
file it came from, the curves equal to metrics.jsonl, sections without data left out, a page of
the user's never replaced, and nothing fetched from the network."""

from __future__ import annotations

import json
import random
from html import escape
from pathlib import Path

import pytest

from instruct_tune.cli import main
from instruct_tune.errors import ConfigError
from instruct_tune.report import write_report
from tests.report import runs
from tests.report.check_page import Page, check_curves, check_numbers, check_self_contained


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, str]:
    root = runs.demo_dir(tmp_path_factory.mktemp("report") / "demo")
    return root, write_report(root).read_text()


def test_every_section_and_number_of_a_demo(demo):
    root, html = demo
    page = Page(html)
    for section in ("glance", "config", "curves", "evals", "preference", "samples", "audit",
                    "timings"):
        assert section in page.ids, section
    checked = check_numbers(root, page)
    srcs = {src for src, _, _ in page.sourced}
    # the three-way table, per split and per task, with both differences
    for split in ("heldout_inputs", "heldout_phrasings"):
        f = f"eval/{split}.json"
        for prefix in ("/base", "/base_few_shot", "", "/delta", "/delta_few_shot"):
            assert f"{f}#{prefix}/exact_match" in srcs and f"{f}#{prefix}/stop_rate" in srcs
        for task in runs.TASKS:
            key = task.replace("~", "~0").replace("/", "~1")
            for prefix in ("/base", "/base_few_shot", ""):
                assert f"{f}#{prefix}/by_task/{key}/stop_rate" in srcs, (task, prefix)
    assert any(s.startswith("train/config.yaml#/lr") for s in srcs)
    assert any(s.startswith("audit.json#/output_quality/findings/0/count") for s in srcs)
    assert any(s.startswith("report.json#/timings/tuning/wall_s") for s in srcs)
    for split in ("heldout_inputs", "heldout_phrasings"):  # supervised vs preference-tuned
        for key in ("exact_match", "stop_rate", "logp_accuracy"):
            for who in ("supervised", "control", "preference"):
                assert f"report.json#/preference/eval/{split}/{key}/{who}" in srcs, (split, key)
        assert f"report.json#/preference/eval/{split}/reward_accuracy/preference" in srcs
    assert escape("How the <stage> & its pairs were made.") in html  # the stage's own words
    assert checked > 200


def test_curves_are_the_metrics(demo):
    root, html = demo
    keys = check_curves(root, Page(html), "train/metrics.jsonl")
    assert keys == {"loss", "eval_loss", "eval/stop_rate", "eval/exact_match", "eval/mean_length"}
    assert "generation checks on eval prompts" in html


def test_samples_show_where_each_model_stopped(demo):
    root, html = demo
    rows = json.loads((root / "eval" / "heldout_inputs.json").read_text())["rows"]
    # the first split's sample cards
    part = html.split('id="samples"')[1].split("</summary>")[1].split("</details>")[0]
    shown = [r for r in rows if escape(r["instruction"]) in part]
    assert 3 <= len(shown) <= 6 and {r["task"] for r in shown} == set(runs.TASKS)
    stopped = sum(r[k] for r in shown for k in ("base_stopped", "few_shot_stopped", "stopped"))
    assert part.count('<span class="stop"') == stopped
    assert part.count('<span class="nostop">') == 3 * len(shown) - stopped
    assert "&lt;/s&gt;" in part  # the stop token itself, escaped
    assert "<tags>" not in html and "&lt;tags&gt;" in html


def test_self_contained_and_phone_ready(demo):
    _, html = demo
    check_self_contained(html)
    assert '<meta name="viewport" content="width=device-width' in html
    assert "@media (max-width:640px)" in html


def test_sections_without_data_are_left_out(tmp_path):
    rng = random.Random(1)
    run = tmp_path / "run"
    runs.write_metrics(run, rng, gen_checks=False)
    html = write_report(run).read_text()
    page = Page(html)
    assert {"config", "curves"} <= set(page.ids)
    assert not {"evals", "preference", "samples", "audit", "timings", "glance"} & set(page.ids)
    assert "generation checks" not in html and check_curves(run, page, "metrics.jsonl") == {
        "loss", "eval_loss"}
    check_numbers(run, page)


def test_eval_out_directory(tmp_path):
    """eval --out a.json and b.json in one directory: one split each, the eval's own settings."""
    rng = random.Random(2)
    for name in ("a", "b"):
        rep = runs.eval_report(rng)
        del rep["base_few_shot"], rep["delta_few_shot"], rep["shots"]
        for row in rep["rows"]:
            for key in [k for k in row if k.startswith("few_shot")]:
                del row[key]
        (tmp_path / f"{name}.json").write_text(json.dumps(rep))
    (tmp_path / "notes.json").write_text('{"not": "an eval"}')
    html = write_report(tmp_path).read_text()
    page = Page(html)
    check_numbers(tmp_path, page)
    assert "-shot" not in html and "<h3>a.json</h3>" in html and "<h3>b.json</h3>" in html
    assert "notes" not in html.split("<footer>")[0]


def test_replaces_only_its_own_page(demo, tmp_path):
    root, _ = demo
    assert write_report(root).read_text().startswith("<!doctype html>")  # ours: replaced
    other = tmp_path / "mine.html"
    other.write_text("<html>my notes</html>")
    with pytest.raises(ConfigError, match="not written by instruct-tune report"):
        write_report(root, other)
    assert other.read_text() == "<html>my notes</html>"


def test_cli(demo, tmp_path, capsys):
    root, _ = demo
    assert main(["report", str(root), "--out", str(tmp_path / "r.html")]) == 0
    assert (tmp_path / "r.html").is_file() and "report written to" in capsys.readouterr().out
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "holds no run to report on" in capsys.readouterr().err
    assert main(["report"]) == 2


def test_a_real_eval_report(tmp_path):
    """The page of what `evaluate` really writes (tiny models: base never stops, tuned does)."""
    import torch

    from instruct_tune.evaluate.compare import evaluate
    from tests.evaluate import tuned

    torch.set_num_threads(1)
    base = tuned.save_base(tmp_path / "base")
    model = tuned.save_tuned(base, tmp_path / "tuned")
    shots = tuned.write_jsonl([tuned.Record.alpaca("Say no.", "no", task="qa")] * 2,
                              tmp_path / "shots.jsonl")
    report = evaluate(model, tuned.RECORDS, compare=base, max_new_tokens=8, few_shot=1,
                      shots=str(shots))
    out = tmp_path / "evals"
    out.mkdir()
    (out / "eval.json").write_text(json.dumps(report))
    html = write_report(out).read_text()
    page = Page(html)
    assert {"glance", "config", "evals", "samples"} <= set(page.ids)
    assert check_numbers(out, page) > 50
    assert html.count('<span class="stop"') == sum(
        r["stopped"] + r["base_stopped"] + r["few_shot_stopped"] for r in report["rows"]) + 1
