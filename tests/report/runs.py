"""Run directories for the report tests, written the way the commands write them: a demo --out
(report.json, audit.json, eval/<split>.json with base, base K-shot and tuned, train/ with
config.yaml and metrics.jsonl through MetricsLog) with seeded random numbers, awkward task names
(a pointer's '/' and '~', HTML's '<' and '&') and outputs that stop or run on."""

from __future__ import annotations

import json
import random
from pathlib import Path

from instruct_tune.config import TrainConfig
from instruct_tune.config_file import save_yaml
from instruct_tune.evaluate.metrics import difference
from instruct_tune.train.outdir import MetricsLog

TASKS = ("reverse", "sort/abc~1", "<upper> & co")


def _metrics(rng: random.Random, n: int) -> dict:
    m = {"n": n, "stop_rate": rng.random(), "template_leak_rate": rng.random() / 3,
         "mean_length": rng.uniform(2, 30), "p95_length": rng.uniform(20, 32),
         "exact_match": rng.random(), "normalized_exact_match": rng.random(),
         "rouge_l": rng.random()}
    return m


def _model(rng: random.Random, name: str, n: int) -> dict:
    return {"model": name, **_metrics(rng, n),
            "by_task": {t: _metrics(rng, n // len(TASKS)) for t in TASKS}}


def eval_report(rng: random.Random, n: int = 12, k: int = 3) -> dict:
    tuned = {"template": "alpaca", "max_new_tokens": 32, "temperature": 0.0, "top_p": 1.0,
             "stop_token": "</s>", **_model(rng, "runs/x/final", n)}
    tuned["base"] = _model(rng, "base-model", n)
    tuned["delta"] = difference(tuned, tuned["base"])
    tuned["shots"] = {"source": "data/train.jsonl", "from": "train/config.yaml", "pool": 90,
                      "left_out_eval_prompts": 0}
    tuned["base_few_shot"] = {**_model(rng, "base-model", n), "k": k, "mean_shots": k,
                              "fewer_shots": 0}
    tuned["delta_few_shot"] = difference(tuned, tuned["base_few_shot"])
    tuned["rows"] = []
    for i in range(n):
        ref = f"answer {i} <b>&amp;</b>"
        tuned["rows"].append({
            "source": f"eval.jsonl:{i + 1}", "task": TASKS[i % len(TASKS)],
            "instruction": f"Do task {i} with <tags> & 'quotes'", "input": "in\nput" if i % 2 else "",
            "reference": ref, "output": ref if i % 3 else f"wrong {i}", "stopped": i % 4 != 0,
            "length": rng.randint(1, 32), "leak": None, "base_output": "rambles on\n" * 4,
            "base_stopped": i % 5 == 0, "base_length": 32, "base_leak": None,
            "few_shot_output": f"### Instruction:\nmore {i}", "few_shot_stopped": i % 2 == 0,
            "few_shot_length": rng.randint(1, 32), "few_shot_leak": "### Instruction:",
            "few_shot_k": k})
    tuned["samples"] = []
    return tuned


def write_metrics(run: Path, rng: random.Random, steps: int = 60, gen_checks: bool = True) -> None:
    """config.yaml and metrics.jsonl as train writes them (eval every 20 steps)."""
    run.mkdir(parents=True, exist_ok=True)
    save_yaml(TrainConfig(model="/models/base", data="/data/train.jsonl", out=str(run), lr=2e-3,
                          packing=True, lora=True, lora_r=8, max_steps=steps), run / "config.yaml")
    log = MetricsLog(run / "metrics.jsonl")
    for step in range(5, steps + 1, 5):
        rec = {"step": step, "epoch": step / 50, "loss": 4 / step ** 0.3 + rng.random() / 10,
               "eval_loss": None, "lr": 2e-3 * (1 - step / steps), "grad_norm": rng.uniform(0, 3),
               "tokens_per_s": rng.uniform(900, 1500), "trained_tokens": step * 700,
               "elapsed": step * 0.8}
        if step % 20 == 0:
            rec["eval_loss"] = 4.5 / step ** 0.25
            if gen_checks:
                rec.update({"eval/stop_rate": min(1.0, step / steps + rng.random() / 10),
                            "eval/exact_match": step / steps / 2,
                            "eval/mean_length": rng.uniform(3, 30)})
        log.write(rec)
    log.close()


def audit_dict() -> dict:
    finding = {"code": "empty_output", "severity": "warning", "message": "3 rows have an empty output",
               "count": 3, "share": 0.01, "advice": "", "examples": [], "lines": [4, 9, 12]}
    return {"size": {"verdict": "300 rows: small", "status": "ok", "checked": True, "limits": "",
                     "stats": {}, "findings": []},
            "output_quality": {"verdict": "3 empty outputs", "status": "warning", "checked": True,
                               "limits": "", "stats": {}, "findings": [finding]},
            "contamination": {"verdict": "Not checked", "status": "skipped", "checked": False,
                              "limits": "", "stats": {}, "findings": []}}


def preference(rng: random.Random) -> dict:
    """The demo's preference summary (demo/prefer.py): supervised vs DPO per held-out set;
    rewards are measured against the supervised model, so it has none."""
    def both(rewards: bool = False) -> dict:
        return {"supervised": None if rewards else rng.random(), "control": rng.random(),
                "preference": rng.random()}

    split = {"exact_match": both(), "stop_rate": both(), "template_leak_rate": both(),
             "mean_length": both(), "reward_accuracy": both(True), "reward_margin": both(True),
             "logp_accuracy": both(), "pairs": 12}
    return {"model": "prefer/final", "how": "How the <stage> & its pairs were made.",
            "plan": {"beta": 0.1, "sft_weight": 1.0, "lr": 6e-4, "epochs": 1.5},
            "pairs": {"train": {"own_wrong": 60, "ramble": 20, "corrupt": 16}},
            "eval": {n: json.loads(json.dumps(split)) for n in ("heldout_inputs",
                                                               "heldout_phrasings")}}


def demo_dir(root: Path, seed: int = 0) -> Path:
    rng = random.Random(seed)
    root.mkdir(parents=True)
    evals = {name: eval_report(rng) for name in ("heldout_inputs", "heldout_phrasings")}
    (root / "eval").mkdir()
    for name, rep in evals.items():
        (root / "eval" / f"{name}.json").write_text(json.dumps(rep, indent=2))
    write_metrics(root / "train", rng)
    (root / "audit.json").write_text(json.dumps(audit_dict()))
    report = {"config": {"out": str(root)}, "base_model": {"model": "/cache/base", "params": 912_384,
                                                           "local": True},
              "tuned_model": str(root / "train" / "final"), "tasks": len(TASKS),
              "rows": {"train": 360, "heldout_inputs": 12, "heldout_phrasings": 12},
              "eval": {n: {k: v for k, v in r.items() if k != "rows"} for n, r in evals.items()},
              "preference": preference(rng),
              "timings": {s: {"wall_s": rng.uniform(1, 90), "cpu_s": rng.uniform(1, 150)}
                          for s in ("base model", "data", "audit", "tuning", "evaluation",
                                    "preference")},
              "total_wall_s": 123.4}
    (root / "report.json").write_text(json.dumps(report, indent=2))
    return root
