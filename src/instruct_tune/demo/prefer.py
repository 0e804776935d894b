"""The demo's preference stage: DPO after supervised tuning, with a control, on the demo's own tasks.

    pairs       the supervised model answers prompts in training phrasings (batched, greedy:
                on-policy) -> pairs (pair_data.py); held-out pairs from its answers to the held-out
                sets (stage 5) -> OUT/data/pairs_{train,heldout}.jsonl
    tuning      `train --method dpo --sft-weight W` from train/final (also the reference), the
                held-out pairs as --eval-data -> OUT/prefer/final. The control: supervised tuning
                continued on the same chosen answers, same rows per step, steps, lr, schedule and
                seed -> OUT/prefer_control/final. Without it a gain could be just more data.
    evaluation  supervised vs control vs preference on both held-out sets (evaluate_pairs, the eval
                command's API): exact match, stop rate, reward accuracy against the supervised
                model -> OUT/prefer/eval_*.json
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from ..data.records import Record
from .pair_data import make_pairs, pair_records, prompts, write_chosen, write_rows

MODELS = ("supervised", "control", "preference")  # the columns, in order
SIDE_BY_SIDE = ("exact_match", "stop_rate", "template_leak_rate", "mean_length")


@dataclass(frozen=True)
class PreferPlan:
    """The preference stage's size and DPO settings (see run.FULL_PLAN / FAST_PLAN)."""

    prompts_per_task: int  # prompts in training phrasings answered (and paired), per task
    epochs: float
    lr_scale: float  # DPO's lr as a share of supervised tuning's (DPO wants a much smaller one)
    batch_size: int  # pairs per optimizer step
    beta: float = 0.1
    sft_weight: float = 1.0  # the chosen answer's NLL next to DPO: without it EM collapses here
    lora: bool = False


def tune(start: Path, data: Path, out: Path, plan: PreferPlan, *, method: str, lr: float,
         max_length: int, precision: str, seed: int, eval_data: Path | None = None) -> Path:
    """`train --method METHOD` from `start`; DPO and its control differ only in method and data."""
    from ..config import TrainConfig
    from ..outdir import release
    from ..train.run import train

    cfg = TrainConfig(model=str(start), data=str(data), out=str(out), method=method,
                      beta=plan.beta, sft_weight=plan.sft_weight if method != "sft" else 0.0,
                      eval_data=str(eval_data) if eval_data else None, lora=plan.lora,
                      epochs=plan.epochs, lr=lr, batch_size=plan.batch_size, max_length=max_length,
                      packing=True, warmup_ratio=0.1, precision=precision, seed=seed, log_every=5,
                      save_every=0, keep_checkpoints=1, eval_every=0)
    try:
        return train(cfg)
    finally:
        release(out)  # train() holds its --out until it is told the run is over


def answer(final: Path, records: list[Record], *, max_new_tokens: int, batch_size: int) -> list[dict]:
    """The supervised model's greedy answers (batched), as evaluate()'s rows: on-policy data."""
    from ..evaluate.compare import evaluate

    return evaluate(final, records, max_new_tokens=max_new_tokens, batch_size=batch_size,
                    samples=0)["rows"]


def _side_by_side(reports: dict[str, dict]) -> dict:
    """evaluate_pairs' reports of the control and the preference model (each with `base` = the
    supervised model) as {metric: {supervised, control, preference}}. Rewards are measured
    against the supervised model, so it has none (None)."""
    sft = reports["preference"]["base"]
    out: dict = {k: {"supervised": sft[k], **{m: r[k] for m, r in reports.items()}}
                 for k in SIDE_BY_SIDE}
    out["reward_accuracy"] = {"supervised": None, **{m: r["preference"]["rewards/accuracies"]
                                                     for m, r in reports.items()}}
    out["reward_margin"] = {"supervised": None, **{m: r["preference"]["rewards/margins"]
                                                   for m, r in reports.items()}}
    # each model's own preference, no reference: the share of pairs where chosen is likelier
    out["logp_accuracy"] = {"supervised": reports["preference"]["preference"]["base"]
                            ["logps/accuracies"], **{m: r["preference"]["logps/accuracies"]
                                                     for m, r in reports.items()}}
    out["pairs"] = reports["preference"]["preference"]["n"]
    out["by_task"] = {t: {"supervised": m["exact_match"],
                          **{k: r["by_task"].get(t, {}).get("exact_match") for k, r in reports.items()}}
                      for t, m in sft["by_task"].items()}
    return out


def compare(models: dict[str, Path], final: Path, held: dict[str, list[dict]], held_file: Path,
            out: Path, *, beta: float, max_new_tokens: int, batch_size: int) -> dict[str, dict]:
    """Each of `models` against the supervised model on each held-out set's pairs
    (evaluate_pairs): generation on prompt -> chosen by both, rewards against the supervised one."""
    from ..evaluate.preference import evaluate_pairs

    evals, line = {}, 1
    for split, ps in held.items():
        recs = pair_records(ps, held_file, line)
        line += len(ps)
        reports = {name: evaluate_pairs(model, recs, compare=final, beta=beta, samples=0,
                                        max_new_tokens=max_new_tokens, batch_size=batch_size)
                   for name, model in models.items()}
        # next to the DPO run, not in OUT/eval/ (the supervised before/after splits)
        (out / "prefer" / f"eval_{split}.json").write_text(json.dumps(reports, indent=2) + "\n")
        evals[split] = _side_by_side(reports)
    return evals


def _last_metrics(metrics: Path) -> dict:
    """The last training record (rewards/*) and the eval record (eval_rewards/*) of a run."""
    keep: dict = {}
    for line in metrics.read_text().splitlines():
        rec = json.loads(line)
        keep.update({k: v for k, v in rec.items() if k.startswith(("rewards/", "logps/", "eval_"))
                     and v is not None})
    return keep


def stage(final: Path, out: Path, splits: dict[str, list[Record]], heldout_rows: dict[str, list[dict]],
          plan: PreferPlan, *, lr: float, max_new_tokens: int, eval_batch_size: int, max_length: int,
          precision: str, seed: int, say) -> dict:
    """Build the pairs, tune with DPO and the control, compare the three; return the summary.
    `heldout_rows`: the supervised model's rows on each held-out set (stage 5's evaluate)."""
    say(f"The supervised model answers {plan.prompts_per_task} prompts per task ...")
    asked = prompts(splits, plan.prompts_per_task, seed)
    trained = {(r.instruction, r.input) for r in splits["train"]}
    rows = answer(final, asked, max_new_tokens=max_new_tokens, batch_size=eval_batch_size)
    train_pairs = make_pairs(rows, seed, "train")
    held = {name: make_pairs(r, seed, name) for name, r in heldout_rows.items()}
    data = out / "data"
    train_file = write_rows(train_pairs, data / "pairs_train.jsonl")
    held_file = write_rows([p for ps in held.values() for p in ps], data / "pairs_heldout.jsonl")
    kinds = {name: dict(Counter(p["kind"] for p in ps))
             for name, ps in (("train", train_pairs), *held.items())}
    say("pairs (rejected = " + "; ".join(f"{n}: " + ", ".join(f"{k} {c}" for k, c in sorted(
        v.items())) for n, v in kinds.items()) + f") -> {data}")

    common = {"lr": lr, "max_length": max_length, "precision": precision, "seed": seed}
    tuned = tune(final, train_file, out / "prefer", plan, method="dpo", eval_data=held_file,
                 **common)
    say("The control: supervised tuning continued on the same chosen answers ...")
    control = tune(final, write_chosen(train_pairs, data / "chosen_train.jsonl"),
                   out / "prefer_control", plan, method="sft", **common)
    evals = compare({"control": control, "preference": tuned}, final, held, held_file, out,
                    beta=plan.beta, max_new_tokens=max_new_tokens, batch_size=eval_batch_size)
    right = sum(r["output"].strip() == r["reference"].strip() for r in rows)
    summary = {"model": str(tuned), "control": str(control), "plan": {**asdict(plan), "lr": lr},
               "pairs": kinds, "prompts": len(rows),
               "new_prompts": sum((r.instruction, r.input) not in trained for r in asked),
               "supervised_right": right / max(len(rows), 1),
               "train_log": _last_metrics(out / "prefer" / "metrics.jsonl"), "eval": evals}
    return {**summary, "how": describe(summary)}


WHAT = {"own_wrong": "its own wrong answer", "own_no_stop": "its own answer that did not stop",
        "ramble": "the right answer, rambling on", "corrupt": "the right answer corrupted"}


def describe(summary: dict) -> str:
    """How the stage was run, in words (report.md and report.html both show it)."""
    plan = summary["plan"]
    return (f"The supervised model answered {summary['prompts']:,} prompts in training phrasings "
            f"({summary['new_prompts']:,} with inputs it was not tuned on, the rest training "
            "prompts of the tasks with few inputs: sums, capitals, opposites; none held out), "
            f"greedily: right on {summary['supervised_right']:.0%}. Each became a pair: chosen = "
            "the right answer, rejected = " + "; ".join(
                f"{WHAT.get(k, k)} ({n:,})" for k, n in sorted(summary["pairs"]["train"].items()))
            + f". Then `train --method dpo` (beta {plan['beta']:g}, sft weight "
            f"{plan['sft_weight']:g}, lr {plan['lr']:g}, {plan['epochs']:g} epochs, "
            f"{'LoRA' if plan['lora'] else 'full fine-tuning'}) from the supervised model, which "
            "is also the reference. The control continues supervised tuning on the same chosen "
            "answers with the same rows per step, steps, lr and seed: what DPO adds beyond more "
            "data is the difference between those two columns. The held-out pairs were built the "
            "same way from the supervised model's answers to the held-out sets.")


__all__ = ["MODELS", "PreferPlan", "describe", "stage"]
