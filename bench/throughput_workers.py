"""One training config of bench/train_throughput.py, run in its own process (clean peak RSS).

    python bench/throughput_workers.py SPEC.json   -> writes SPEC['out'].result.json

Both tools are timed by the same global hooks: the clock starts at the first forward of a
Hugging Face model in training mode and stops at the last optimizer step, so model loading,
tokenization and saving are outside the window for both. The held-out loss is computed here
the same way for every config: mean cross-entropy over trained tokens, one row at a time.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

CLOCKS = (time.perf_counter, time.process_time)


def tokenize_file(path: Path, tokenizer, max_length: int) -> list[dict]:
    """Our tokenization (also what TRL is checked against): input_ids, labels, prompt, completion."""
    from instruct_tune.data.load import load_records
    from instruct_tune.data.templates import get_template
    from instruct_tune.data.tokenize import build_examples

    template = get_template("alpaca", tokenizer)
    records = load_records(path)
    examples = build_examples(records, tokenizer, template, max_length=max_length, truncation="drop")
    assert not examples.dropped, "bench rows must all fit max_length"
    out = []
    for rec, ex in zip(records, examples.examples, strict=True):
        segs = template.render(rec)
        out.append({"input_ids": ex.input_ids, "labels": ex.labels,
                    "prompt": "".join(s.text for s in segs if not s.trainable),
                    "completion": "".join(s.text for s in segs if s.trainable)})
    return out


class Clock:
    """First training forward -> each optimizer step, via torch's global hooks. Also notes the
    first forward in any mode (a preference run's reference pass starts there)."""

    def __init__(self):
        from transformers import PreTrainedModel

        self.t0: tuple[float, float] | None = None  # (wall, process CPU) at the first forward
        self.first: float | None = None  # wall time of the first forward, training or not
        self.steps: list[tuple[float, float]] = []

        def on_forward(module, args):
            if not isinstance(module, PreTrainedModel):
                return
            self.first = self.first or time.perf_counter()
            if self.t0 is None and module.training:
                self.t0 = (time.perf_counter(), time.process_time())
                self._fwd.remove()

        self._fwd = torch.nn.modules.module.register_module_forward_pre_hook(on_forward)
        self._opt = register_optimizer_step_post_hook(
            lambda opt, a, k: self.steps.append((time.perf_counter(), time.process_time())))

    def window(self) -> dict:
        """Wall and CPU seconds of the timed window, and the optimizer steps in it."""
        self._opt.remove()
        (w0, c0), (w1, c1) = self.t0, self.steps[-1]
        return {"window_s": w1 - w0, "cpu_s": c1 - c0, "steps": len(self.steps),
                "before_s": w0 - self.first}


@torch.no_grad()
def eval_loss(model, eval_json: str) -> float:
    model.eval()
    total, count = 0.0, 0
    for ids, labels in json.loads(Path(eval_json).read_text()):
        logits = model(input_ids=torch.tensor([ids]), use_cache=False).logits[0, :-1]
        target = torch.tensor(labels[1:])
        total += float(torch.nn.functional.cross_entropy(logits.float(), target, reduction="sum",
                                                         ignore_index=-100))
        count += int((target != -100).sum())
    return total / count


def packed_exactness(trainer, model) -> float:
    """max |logits(packed row) - logits(each row alone)| for TRL's padding-free batch."""
    rows = [trainer.train_dataset[i] for i in range(2)]
    batch = trainer.data_collator(rows)
    inputs = {k: v for k, v in batch.items() if k not in ("labels",)}
    was = model.training
    model.eval()
    with torch.no_grad():
        packed = model(**inputs, use_cache=False).logits[0]
        pos = batch["position_ids"][0]
        starts = (pos == 0).nonzero().flatten().tolist() + [pos.numel()]
        diff = 0.0
        for a, b in zip(starts, starts[1:], strict=False):
            alone = model(input_ids=batch["input_ids"][:, a:b], use_cache=False).logits[0]
            diff = max(diff, float((packed[a:b] - alone).abs().max()))
    model.train(was)
    return diff


def run_trl(spec: dict) -> dict:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    packing = spec["config"] == "trl-pack"
    rows = json.loads(Path(spec["train_json"]).read_text())
    dataset = Dataset.from_dict({"prompt": [r["prompt"] for r in rows],
                                 "completion": [r["completion"] for r in rows]})
    tok = AutoTokenizer.from_pretrained(spec["model_dir"])
    model = AutoModelForCausalLM.from_pretrained(spec["model_dir"], dtype=torch.float32)
    args = SFTConfig(
        output_dir=spec["out"], report_to="none", use_cpu=True, bf16=spec["precision"] == "bf16", fp16=False,
        gradient_checkpointing=False, num_train_epochs=1, learning_rate=spec["lr"],
        lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
        per_device_train_batch_size=spec["pack_batch"] if packing else spec["batch"],
        gradient_accumulation_steps=1, max_length=spec["max_length"], packing=packing,
        packing_strategy="bfd", completion_only_loss=True, seed=spec["seed"],
        # Best non-packed option TRL offers: batches of similar length (less padding).
        train_sampling_strategy="random" if packing else "group_by_length",
        logging_steps=10, save_strategy="no", disable_tqdm=True, dataloader_num_workers=0)
    seen = {"trained": torch.zeros((), dtype=torch.long), "loss": None, "slots": 0, "real": 0}

    class Trainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            seen["trained"] += (inputs["labels"][:, 1:] != -100).sum()
            seen["slots"] += inputs["input_ids"].numel()
            mask = inputs.get("attention_mask")
            seen["real"] += int(mask.sum()) if mask is not None else inputs["input_ids"].numel()
            out = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            seen["loss"] = (out[0] if return_outputs else out).detach()
            return out

    trainer = Trainer(model=model, args=args, train_dataset=dataset, processing_class=tok)
    note = f"packed==alone: max|dlogits| {packed_exactness(trainer, model):.1e}" if packing else ""
    clock = Clock()
    with profiled(spec):
        trainer.train()
    window = clock.window()
    trainer.save_model(spec["out"] + "/final")
    return dict(window, last_loss=float(seen["loss"]), padding=1 - seen["real"] / seen["slots"],
                trained_seen=int(seen["trained"]), note=note,
                eval_loss=eval_loss(trainer.model, spec["eval_json"]))


def run_ours(spec: dict) -> dict:
    from transformers import AutoModelForCausalLM

    from instruct_tune.config import TrainConfig
    from instruct_tune.train.run import train

    packing = spec["config"] == "ours-pack"
    cfg = TrainConfig(
        model=spec["model_dir"], data=spec["train_file"], out=spec["out"], epochs=1.0,
        lr=spec["lr"], batch_size=spec["pack_rows"] if packing else spec["batch"], grad_accum=1,
        packing=packing, schedule="constant", warmup_ratio=0.0, weight_decay=0.0,
        max_grad_norm=1.0, precision=spec["precision"],
        allow_slow_bf16=spec.get("allow_slow_bf16", False), seed=spec["seed"], log_every=1, save_every=10**9,
        eval_every=0, quiet=True, overwrite=True, max_length=spec["max_length"], cache_dir="none")
    clock = Clock()
    with profiled(spec):
        final = train(cfg)
    window = clock.window()
    metrics = [json.loads(x) for x in (Path(spec["out"]) / "metrics.jsonl").read_text().splitlines()]
    train_rows = [m for m in metrics if m.get("loss") is not None]
    model = AutoModelForCausalLM.from_pretrained(final, dtype=torch.float32)
    return dict(window, last_loss=float(train_rows[-1]["loss"]), padding=_our_padding(spec),
                eval_loss=eval_loss(model, spec["eval_json"]))


def _our_padding(spec: dict) -> float | None:
    """Padding share of our batches for this data (the plan the trainer used)."""
    from types import SimpleNamespace

    from instruct_tune.train.plan import Plan

    rows = json.loads(Path(spec["train_json"]).read_text())
    examples = [SimpleNamespace(input_ids=r["input_ids"], labels=r["labels"]) for r in rows]
    packing = spec["config"].endswith("-pack")
    plan = Plan(examples, batch_size=spec["pack_rows"] if packing else spec["batch"],
                grad_accum=1, world=1, packing=packing, max_length=spec["max_length"],
                seed=spec["seed"], epochs=1.0, max_steps=None, pad_id=0)
    return plan.padding_share()


@contextmanager
def profiled(spec: dict):
    """With spec['profile']: torch.profiler over training; prints where the CPU time went."""
    if not spec.get("profile"):
        yield
        return
    from torch.profiler import ProfilerActivity, profile

    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        yield
    wall = time.perf_counter() - t0
    events = prof.key_averages()
    groups = {"matmul (mm/addmm/bmm)": ("aten::mm", "aten::addmm", "aten::addmm_", "aten::bmm"),
              "attention (sdpa kernels)": ("scaled_dot_product",),
              "softmax / cross-entropy": ("softmax", "logsumexp", "nll_loss", "cross_entropy",
                                          "aten::exp_", "aten::exp")}
    totals = dict.fromkeys(groups, 0.0)
    for e in events:
        for g, keys in groups.items():
            if any(k in e.key for k in keys) and "autograd" not in e.key:
                totals[g] += e.self_cpu_time_total / 1e6
    opt = sum(e.cpu_time_total for e in events if e.key.startswith("Optimizer.step")) / 1e6
    ops = sum(e.self_cpu_time_total for e in events if e.key.startswith("aten::")) / 1e6
    # The profiler times ops by the wall clock, so everything here is wall seconds.
    print(f"\nprofile of {spec['config']} (vocab {spec['vocab']}, {spec['threads']} threads), "
          f"{wall:.1f} s incl. setup and saving; time in aten ops ({ops:.1f} s) by kind:")
    for g, t in [*totals.items(), ("optimizer step (total)", opt),
                 ("other aten ops", ops - sum(totals.values()) - opt)]:
        print(f"  {g:28} {t:7.2f} s  {t / ops:6.1%}")
    print(f"  outside aten ops (Python, data, loading, saving): {wall - ops:.1f} s")
    print(events.table(sort_by="self_cpu_time_total", row_limit=15))


def serve(spec_path: str, run: Callable[[dict], dict]) -> None:
    """Run one config (`run(spec)` returns its numbers) between two matmul-peak measurements and
    write the result, with the process's peak RSS, to spec['out'] + '.result.json'."""
    spec = json.loads(Path(spec_path).read_text())
    torch.set_num_threads(spec["threads"])
    torch.manual_seed(spec["seed"])
    # The matmul peak is measured here, right before and after training, so MFU compares the run
    # with what this machine delivered at that moment (it is shared; load changes by the minute).
    # Per wall second and per CPU second (the latter is robust to other jobs on the machine).
    dtype = torch.bfloat16 if spec["precision"] == "bf16" else torch.float32
    peaks = [common.matmul_peak(dtype, 1024, 4, clock) for clock in CLOCKS]
    result = run(spec)
    rss = common.peak_rss_mib()
    after = [common.matmul_peak(dtype, 1024, 4, clock) for clock in CLOCKS]
    result.update(config=spec["config"], peak_rss_mib=rss, peak_flops=max(peaks[0], after[0]),
                  peak_flops_cpu=max(peaks[1], after[1]))
    Path(spec["out"] + ".result.json").write_text(json.dumps(result))


def main(spec_path: str) -> None:
    serve(spec_path, lambda spec: (run_trl if spec["config"].startswith("trl") else run_ours)(spec))


if __name__ == "__main__":
    main(sys.argv[1])
