"""Watching a run learn: generation checks at each eval, the pace and ETA, the peak-memory
estimate in the header, and a --max-time budget that ends with the schedule decayed."""

from __future__ import annotations

import pytest

from instruct_tune.data.load import load_records
from instruct_tune.evaluate.during_training import GenerationCheck
from instruct_tune.evaluate.generate import Generator
from instruct_tune.evaluate.metrics import score
from instruct_tune.train import run as run_module
from instruct_tune.train.run import train
from tests.train.conftest import metrics


def test_generation_checks_are_logged_at_each_eval_and_match_the_final_model(make_cfg, eval_file,
                                                                            tmp_path):
    cfg = make_cfg(out=tmp_path / "run", max_steps=4, eval_every=2, eval_data=str(eval_file),
                   eval_samples=4, eval_max_new_tokens=8)
    factory = lambda recs: GenerationCheck.sample(recs, 4, cfg.seed, max_new_tokens=8)  # noqa: E731
    final = train(cfg, generation_check=factory)
    rows = {m["step"]: m for m in metrics(final.parent)}
    assert all("eval/stop_rate" in rows[s] for s in (2, 4)) and "eval/stop_rate" not in rows[1]
    # The last check ran on the final weights: the same sample answered by final/ scores the same.
    sample = factory(load_records(str(eval_file))).records
    gen = Generator.load(final, device="cpu")
    outs = gen.generate(gen.encode_many([r.prompt_messages() for r in sample]), max_new_tokens=8)
    want = score(outs, [r.output for r in sample], gen.markers)
    assert rows[4]["eval/stop_rate"] == pytest.approx(want["stop_rate"])
    assert rows[4]["eval/exact_match"] == pytest.approx(want["exact_match"])
    assert rows[4]["eval/mean_length"] == pytest.approx(want["mean_length"])


def test_no_generation_check_without_eval_samples(make_cfg, eval_file, tmp_path):
    cfg = make_cfg(out=tmp_path / "run", max_steps=2, eval_every=1, eval_data=str(eval_file),
                   eval_samples=0)
    final = train(cfg, generation_check=lambda recs: pytest.fail("check built with 0 samples"))
    assert all("eval/stop_rate" not in m for m in metrics(final.parent))


def test_max_time_plans_the_cosine_schedule_to_end_decayed(make_cfg, tmp_path):
    """A budget far below the planned epochs: the schedule is re-planned for the steps that fit,
    so the run ends by itself with the last step's lr near 0 instead of cut at the peak."""
    cfg = make_cfg(out=tmp_path / "run", max_steps=None, epochs=1000, max_time="6s", log_every=2,
                   save_every=0, lr=1e-3)
    final = train(cfg)
    rows = metrics(final.parent)
    last = rows[-1]
    assert 4 <= last["step"] < 10_000  # far fewer than planned
    # Without the re-plan the last lr would be the peak (1e-3): cosine over 4+ steps ends below 15%.
    assert last["lr"] <= 0.15 * cfg.lr, [(m["step"], m["lr"]) for m in rows]


def test_header_states_pace_and_peak_memory(make_cfg, tmp_path, monkeypatch):
    said: list[str] = []
    monkeypatch.setattr(run_module.console, "print", lambda *a, **k: said.append(str(a[0])))
    lines: list[str] = []
    from instruct_tune.train import progress

    monkeypatch.setattr(progress.TrainProgress, "line",
                        lambda self, text, markup=True: lines.append(text))
    train(make_cfg(out=tmp_path / "run", max_steps=4, log_every=2, save_every=0))
    memory = next(x for s in said for x in s.splitlines() if x.startswith("memory:"))
    assert "weights" in memory and "AdamW" in memory and "activations" in memory
    assert any(x.startswith("pace: ") and "per epoch; ETA" in x for x in lines), lines


def test_memory_estimate_counts_weights_gradients_and_adamw():
    from types import SimpleNamespace

    from instruct_tune.train.memory import estimate

    plan = SimpleNamespace(world=1, lengths=[10, 30, 20],
                           micro_batches=lambda e: [[[0], [1]], [[2]]])
    model = SimpleNamespace(config=SimpleNamespace(hidden_size=8, intermediate_size=16,
                                                   num_hidden_layers=2, vocab_size=50))
    full = estimate(model, plan, n_all=1000, n_train=1000, checkpointing=False, logits_rows=4)
    lora = estimate(model, plan, n_all=1000, n_train=10, checkpointing=False, logits_rows=4)
    assert (full.weights, full.gradients, full.optimizer) == (4000, 4000, 8000)
    assert (lora.weights, lora.gradients, lora.optimizer) == (4000, 40, 80)
    assert full.tokens == 2 * 30  # two sequences padded to the longest of the micro-batch
    ckpt = estimate(model, plan, n_all=1000, n_train=1000, checkpointing=True, logits_rows=4)
    assert ckpt.activations < full.activations
