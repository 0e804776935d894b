"""`demo --levers`: each setting changes one lever against the baseline (rows, task types,
phrasings, corrupted outputs, curate's drops), and a tiny end-to-end run reports every setting."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from instruct_tune.demo import levers as levers_mod
from instruct_tune.demo import tasks
from instruct_tune.demo.levers_data import RAMBLE_WORDS, half_of_tasks, settings, uses_phrasing
from instruct_tune.demo.tasks import TASKS

PER_TASK = 40


@pytest.fixture(scope="module")
def built():
    splits = tasks.build(seed=3, train_per_task=levers_mod.POOL * PER_TASK, eval_per_task=3)
    heldout = splits["heldout_inputs"] + splits["heldout_phrasings"]
    return splits["train"], {s.name: s for s in settings(splits["train"], heldout, PER_TASK, 3)}


def _count(rows) -> Counter:
    return Counter(r.meta["task"] for r in rows)


def _key(r) -> tuple[str, str, str]:
    return r.instruction, r.input, r.output


def test_baseline_has_every_task_and_phrasing(built):
    pool, s = built
    base = s["baseline"].records
    pool_count = _count(pool)
    assert _count(base) == {t: min(PER_TASK, pool_count[t]) for t in TASKS}
    assert {_key(r) for r in base} <= {_key(r) for r in pool}  # clean rows from the pool
    assert len({_key(r) for r in base}) == len(base)
    for name, task in TASKS.items():
        rows = [r for r in base if r.meta["task"] == name]
        assert all(any(uses_phrasing(r, p) for r in rows) for p in task.train_phrasings), name


def test_size_settings_are_shares_of_the_baseline(built):
    _, s = built
    base = _count(s["baseline"].records)
    for name, share in (("size_10", 0.1), ("size_30", 0.3)):
        rows = s[name].records
        assert {_key(r) for r in rows} <= {_key(r) for r in s["baseline"].records}
        assert _count(rows) == {t: max(1, round(share * n)) for t, n in base.items()}, name
    assert len(s["size_10"].records) < len(s["size_30"].records) < len(s["baseline"].records)


def test_task_setting_keeps_half_the_types_and_the_total(built):
    _, s = built
    half, base = s["tasks_half"], _count(s["baseline"].records)
    kept = half_of_tasks()
    assert len(kept) == len(TASKS) // 2 and half.info["left_out"] == [t for t in TASKS if t not in kept]
    assert _count(half.records) == {t: 2 * base[t] for t in kept}
    assert abs(len(half.records) - len(s["baseline"].records)) <= 0.1 * len(s["baseline"].records)


def test_phrasing_setting_uses_one_phrasing_per_task(built):
    _, s = built
    one = s["phrasings_one"]
    assert _count(one.records) == _count(s["baseline"].records)
    for r in one.records:
        task = TASKS[r.meta["task"]]
        used = [p for p in task.train_phrasings if uses_phrasing(r, p)]
        assert used == [task.train_phrasings[0]], r
    # answers stay right: the row is the task's answer to its own input
    assert {_key(r) for r in one.records} <= {_key(r) for r in built[0]}


def test_corruption_share_and_kinds(built):
    _, s = built
    base, bad = s["baseline"].records, s["corrupted"].records
    assert [(r.instruction, r.input) for r in base] == [(r.instruction, r.input) for r in bad]
    changed = [(a, b) for a, b in zip(base, bad, strict=True) if a.output != b.output]
    assert len(changed) == round(0.25 * len(base))
    kinds = Counter(b.meta["corruption"] for _, b in changed)
    assert abs(kinds["wrong"] - kinds["ramble"]) <= 1
    answers = {t: {r.output for r in base if r.meta["task"] == t} for t in TASKS}
    for a, b in changed:
        if b.meta["corruption"] == "wrong":  # another answer of the same task
            assert b.output in answers[a.meta["task"]] and b.output != a.output
        else:  # the right answer, then run-on text
            assert b.output.startswith(a.output + " ")
            extra = len(b.output.split()) - len(a.output.split())
            assert RAMBLE_WORDS[0] <= extra <= RAMBLE_WORDS[1]
    assert all("corruption" not in a.meta for a, b in zip(base, bad, strict=True) if a.output == b.output)


def test_curate_removes_what_it_can_see(built):
    _, s = built
    bad, cur = s["corrupted"].records, s["curated"]
    kept = {_key(r) for r in cur.records}
    ramble = [r for r in bad if r.meta.get("corruption") == "ramble"]
    # visible: a ramble cut after "the"/"and"/"of" stops mid-sentence; invisible: one that ends a sentence
    dangling = [r for r in ramble if r.output.split()[-1] in ("the", "and", "of", "a", "to")]
    finished = [r for r in ramble if r.output.endswith((".", "!", "?"))]
    assert dangling and finished
    assert not any(_key(r) in kept for r in dangling)
    assert all(_key(r) in kept for r in finished)
    wrong = [r for r in bad if r.meta.get("corruption") == "wrong"]
    assert all(_key(r) in kept for r in wrong)  # a wrong answer looks like a right one
    info = cur.info["curate"]
    assert info["kept"] == len(cur.records) and info["rows"] == len(bad)
    assert sum(info["dropped"]["ramble"].values()) == sum(_key(r) not in kept for r in ramble)
    # the clean rows it drops are right answers identical to their input (the copy task's, an
    # already sorted list): curate's copies_input check cannot tell them from lazy copies
    dropped_clean = [r for r in bad if "corruption" not in r.meta and _key(r) not in kept]
    assert dropped_clean and all(r.output == r.input for r in dropped_clean)
    assert sum(info["dropped"]["clean"].values()) == len(dropped_clean)


TINY = levers_mod.LeversPlan(
    levers_mod.BaseSpec(vocab_size=400, hidden=32, layers=1, heads=2, intermediate=64, seq_len=64,
                        docs=60, steps=2, batch_size=4),
    per_task=12, eval_per_task=1, steps=2, lr=1e-3, batch_size=8, max_length=128,
    max_new_tokens=3, eval_batch_size=32)


def test_tiny_levers_run_reports_every_setting(tmp_path, monkeypatch):
    from instruct_tune.config import DemoConfig
    from instruct_tune.demo.run import demo

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("INSTRUCT_TUNE_CACHE", str(tmp_path / "tok"))
    monkeypatch.setattr(levers_mod, "LEVERS_FAST", TINY)
    out = tmp_path / "out"
    result = demo(DemoConfig(out=str(out), fast=True, levers=True))

    saved = json.loads((out / "report.json").read_text())
    assert saved["levers"]["settings"] == json.loads(json.dumps(result["levers"]["settings"]))
    names = [r["name"] for r in saved["levers"]["settings"]]
    assert names == ["base", "baseline", "size_10", "size_30", "tasks_half", "phrasings_one",
                     "corrupted", "curated"]
    for r in saved["levers"]["settings"]:
        for split in ("heldout_inputs", "heldout_phrasings"):
            m = r["eval"][split]
            assert m["n"] == len(TASKS) and 0 <= m["exact_match"] <= 1 and 0 <= m["stop_rate"] <= 1
        if r["name"] != "base":
            assert (out / "train" / r["name"] / "final").is_dir()
            assert not (out / "train" / r["name"] / "checkpoints").exists()
            assert set(r["timings"]) == {"train", "eval"}
            assert r["epochs"] == round(TINY.steps * TINY.batch_size / r["rows"], 1)
            assert len((out / "data" / f"{r['name']}.jsonl").read_text().splitlines()) == r["rows"]
    assert set(saved["levers"]["sentences"]) == {"how to read", "size", "tasks", "phrasings", "quality"}
    assert (out / saved["levers"]["figure"]).stat().st_size > 0
    md = (out / "report.md").read_text()
    for r in saved["levers"]["settings"]:
        assert f"| {r['label']} |" in md
    assert all({"wall_s", "cpu_s"} <= set(t) for t in saved["timings"].values())


    from html import escape

    from tests.report.check_page import Page, check_numbers, check_self_contained

    html = (out / "report.html").read_text()
    check_self_contained(html)
    page = Page(html)
    assert "levers" in page.ids
    assert check_numbers(out, page) >= 6 * len(names)  # every number matches report.json
    assert all(f"<th>{escape(r['label'])}</th>" in html for r in saved["levers"]["settings"])
    assert "data:image/png;base64," in html
