"""One config of bench/dpo_throughput.py, run in its own process (clean peak RSS).

    python bench/dpo_workers.py SPEC.json   -> writes SPEC['out'].result.json

Both tools train the same pairs in the same order (TRL reads them in our plan's order with a
sequential sampler), so their per-step losses are comparable step by step. Timing, profiling,
peak RSS and the matmul peak come from throughput_workers (the same hooks as the SFT bench): the
window runs from the first training forward to the last optimizer step, so tokenization and the
reference pass (both tools precompute it, in eval mode) are outside it; `before_s` is the time
from the first forward of any kind (the reference pass) to the first training forward.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput_workers import Clock, profiled, serve  # noqa: E402


def run_trl(spec: dict) -> dict:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    rows = json.loads(Path(spec["trl_json"]).read_text())  # training order
    dataset = Dataset.from_dict({k: [r[k] for r in rows] for k in ("prompt", "chosen", "rejected")})
    tok = AutoTokenizer.from_pretrained(spec["model_dir"])
    model = AutoModelForCausalLM.from_pretrained(spec["model_dir"], dtype=torch.float32)
    args = DPOConfig(
        output_dir=spec["out"], report_to="none", use_cpu=True, bf16=spec["precision"] == "bf16",
        fp16=False, gradient_checkpointing=False, num_train_epochs=1, learning_rate=spec["lr"],
        lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
        per_device_train_batch_size=spec["batch"], gradient_accumulation_steps=1,
        max_length=spec["max_length"], beta=spec["beta"], loss_type=["sigmoid"],
        # Its best CPU setup: the reference scored once before training, no reference model held;
        # batches in our (length-grouped) order. padding_free is off in trl 1.x ("temporarily
        # unavailable", it warns and pads), so there is no packed TRL config.
        precompute_ref_log_probs=True, precompute_ref_batch_size=spec["batch"],
        train_sampling_strategy="sequential", seed=spec["seed"], logging_steps=10,
        save_strategy="no", disable_tqdm=True, dataloader_num_workers=0)
    seen = {"losses": [], "slots": 0, "real": 0}

    class Trainer(DPOTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            seen["slots"] += inputs["input_ids"].numel()
            seen["real"] += int(inputs["attention_mask"].sum())
            out = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            seen["losses"].append(float((out[0] if return_outputs else out).detach()))
            return out

    clock = Clock()  # before the trainer: its reference pass runs in __init__
    trainer = Trainer(model=model, args=args, train_dataset=dataset, processing_class=tok)
    cols = ("prompt_ids", "chosen_ids", "rejected_ids")
    differ = sum(any(trainer.train_dataset[i][c] != r[c] for c in cols) for i, r in enumerate(rows))
    with profiled(spec):
        trainer.train()
    window = clock.window()
    note = f"{differ} pairs tokenized differently from ours! " if differ else ""
    return dict(window, losses=seen["losses"], padding=1 - seen["real"] / seen["slots"], note=note)


def run_ours(spec: dict) -> dict:
    from instruct_tune.config import TrainConfig
    from instruct_tune.train.run import train

    # What `instruct-tune train --method dpo` runs (the CLI builds this config and calls train).
    cfg = TrainConfig(
        model=spec["model_dir"], data=spec["train_file"], out=spec["out"], method="dpo",
        beta=spec["beta"], template="alpaca", epochs=1.0, lr=spec["lr"], batch_size=spec["batch"],
        grad_accum=1, packing=spec["config"] == "ours-pack", schedule="constant",
        warmup_ratio=0.0, weight_decay=0.0, max_grad_norm=1.0, precision=spec["precision"],
        allow_slow_bf16=spec.get("allow_slow_bf16", False), seed=spec["seed"], log_every=1,
        save_every=10**9, eval_every=0, quiet=True, overwrite=True,
        max_length=spec["max_length"], cache_dir="none")
    clock = Clock()
    with profiled(spec):
        train(cfg)
    window = clock.window()
    metrics = [json.loads(x) for x in (Path(spec["out"]) / "metrics.jsonl").read_text().splitlines()]
    return dict(window, losses=[m["loss"] for m in metrics if m.get("loss") is not None],
                padding=spec["padding"], note="")


if __name__ == "__main__":
    serve(sys.argv[1], lambda spec: (run_trl if spec["config"] == "trl" else run_ours)(spec))
