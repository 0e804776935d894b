"""Training throughput: instruct-tune vs TRL's SFTTrainer, and against the machine's matmul peak.

Same tiny Llama (hidden 256, 4 layers; vocab 8k and 32k, same initial weights), same synthetic
Alpaca-like rows, same hyperparameters (AdamW, constant lr, clip 1.0, fp32, one epoch), each
config in its own subprocess (clean peak RSS), configs interleaved so machine noise hits all.

    python bench/train_throughput.py                      # both vocabs, 1 thread: ~5 min idle
    python bench/train_throughput.py --vocab 32000 --threads 2 --repeat 2

Per config it prints trained tokens/s (response + EOS tokens only), the ratio to TRL's best
config, model FLOPs utilisation (needed FLOPs / wall time / measured fp32 matmul peak), peak
RSS, the loss at the last step and a held-out loss computed the same way for every config.
FLOPs counted are those the work needs: 6 x body params x all real tokens, 6 x head params x
trained tokens (logits are only needed where there is a label), and causal attention per row.
The timed window runs from the first training forward to the last optimizer step (global hooks,
identical for both tools), so setup, tokenization and saving are excluded for both.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import harness  # noqa: E402
import throughput_workers as workers  # noqa: E402

CONFIGS = ("trl-nopack", "ours-nopack", "trl-pack", "ours-pack")


def prepare(vocab: int, args, work: Path) -> dict:
    """Model dir, train/eval files, the tokenized examples and the FLOPs one epoch needs."""
    mdir = common.model_dir(vocab)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(mdir)
    rows = common.make_rows(args.rows + args.eval_rows, tok, seed=args.seed)
    train_file = common.write_jsonl(rows[:args.rows], work / f"train-{vocab}.jsonl")
    eval_file = common.write_jsonl(rows[args.rows:], work / f"eval-{vocab}.jsonl")
    train = workers.tokenize_file(train_file, tok, args.max_length)
    evals = workers.tokenize_file(eval_file, tok, args.max_length)
    (work / f"eval-{vocab}.json").write_text(json.dumps([(e["input_ids"], e["labels"])
                                                        for e in evals]))
    (work / f"train-{vocab}.json").write_text(json.dumps(train))
    lengths = [len(e["input_ids"]) for e in train]
    trained = sum(sum(x != -100 for x in e["labels"][1:]) for e in train)
    tokens = sum(lengths)
    flops, body = common.needed_flops(mdir, tokens, trained, sum(n * n for n in lengths))
    # TRL's --per-device-train-batch-size counts packed sequences; ours counts rows (packing is
    # only a layout). For the same work per step, our packed run takes the rows TRL's
    # `pack_batch` best-fit sequences hold on average.
    from instruct_tune.data.pack import pack

    pack_rows = max(1, round(args.pack_batch * len(lengths) / len(pack(lengths, args.max_length))))
    return dict(vocab=vocab, model_dir=str(mdir), train_file=str(train_file), pack_rows=pack_rows,
                train_json=str(work / f"train-{vocab}.json"), eval_json=str(work / f"eval-{vocab}.json"),
                tokens=tokens, trained=trained, flops=flops, body_params=body, rows=len(train))


def run_config(name: str, data: dict, args, work: Path, profile: bool = False) -> dict:
    spec = dict(data, config=name, threads=args.threads, lr=args.lr, batch=args.batch,
                pack_batch=args.pack_batch, max_length=args.max_length, seed=args.seed,
                precision=args.precision, allow_slow_bf16=args.allow_slow_bf16,
                out=str(work / f"{name}-{data['vocab']}"), profile=profile)
    return harness.run_worker(workers.__file__, spec, work / f"spec-{name}-{data['vocab']}.json",
                              profile=profile)


def report(data: dict, results: dict[str, dict]) -> dict:
    """Print one table for a vocab size; return the numbers the summary needs."""
    ok = {k: r for k, r in results.items() if "error" not in r}
    for r in ok.values():
        r["tps"], r["tpc"] = data["trained"] / r["window_s"], data["trained"] / r["cpu_s"]
        # Peaks were measured in the same process, just before and after training.
        r["mfu"] = data["flops"] / r["window_s"] / r["peak_flops"]
        r["mfu_cpu"] = data["flops"] / r["cpu_s"] / r["peak_flops_cpu"]
    trl = [k for k in ok if k.startswith("trl")]
    best_trl = max(trl, key=lambda k: ok[k]["tps"]) if trl else None
    print(f"\nvocab {data['vocab']}: {data['rows']} rows, {data['tokens']} tokens/epoch, "
          f"{data['trained']} trained, body {data['body_params'] / 1e6:.2f}M params, "
          f"{data['flops'] / 1e12:.2f} TFLOP needed/epoch")
    print(f"{'config':12} {'steps':>5} {'wall s':>6} {'CPU s':>6} {'pad':>5} {'trained tok/s':>13} "
          f"{'xTRL':>5} {'xTRL CPU':>8} {'MFU':>5} {'MFU CPU':>7} {'RSS MiB':>7} {'last loss':>9} "
          f"{'eval loss':>9}  notes")
    for name in CONFIGS:
        r = results.get(name)
        if r is None or "error" in r:
            print(f"{name:12} failed: {r['error']}" if r else "", end="\n" if r else "")
            continue
        b = ok.get(best_trl, r)
        if r.get("trained_seen", data["trained"]) != data["trained"]:
            r["note"] = f"trained {r['trained_seen']} tokens, not {data['trained']}! " + r.get("note", "")
        print(f"{name:12} {r['steps']:5d} {r['window_s']:6.1f} {r['cpu_s']:6.1f} {r['padding']:5.1%} "
              f"{r['tps']:13.0f} {r['tps'] / b['tps']:5.2f} {r['tpc'] / b['tpc']:8.2f} "
              f"{r['mfu']:5.0%} {r['mfu_cpu']:7.0%} {r['peak_rss_mib']:7.0f} {r['last_loss']:9.4f} "
              f"{r['eval_loss']:9.4f}  {r.get('note', '')}")
    out = {"vocab": data["vocab"], "best_trl": best_trl}
    ours = [k for k in ok if k.startswith("ours")]
    pairs = [(k, "trl-" + k.split("-", 1)[1]) for k in ours if "trl-" + k.split("-", 1)[1] in ok]
    if best_trl and pairs:
        best = max(ours, key=lambda k: ok[k]["tps"])
        out.update(best_ours=best, speedup=ok[best]["tps"] / ok[best_trl]["tps"],
                   speedup_cpu=ok[best]["tpc"] / ok[best_trl]["tpc"], mfu=ok[best]["mfu"],
                   mfu_cpu=ok[best]["mfu_cpu"],
                   loss_diff=max(abs(ok[a]["eval_loss"] / ok[b]["eval_loss"] - 1) for a, b in pairs),
                   rss_ratio=max(ok[a]["peak_rss_mib"] / ok[b]["peak_rss_mib"] for a, b in pairs))
        print(f"bars: {best} {out['speedup']:.2f}x TRL best ({best_trl}) (>= 3; per CPU-second "
              f"{out['speedup_cpu']:.2f}x), eval loss within {out['loss_diff']:.2%} of TRL with the "
              f"same packing (<= 2%), peak RSS <= {out['rss_ratio']:.2f}x TRL's (<= 1), MFU "
              f"{out['mfu']:.0%} wall / {out['mfu_cpu']:.0%} CPU (>= 60% at 32k)")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--vocab", default="8000,32000", help="comma-separated vocab sizes")
    p.add_argument("--configs", default=",".join(CONFIGS))
    p.add_argument("--rows", type=int, default=96, help="training rows (one epoch)")
    p.add_argument("--eval-rows", type=int, default=32)
    p.add_argument("--batch", type=int, default=8, help="rows per step without packing")
    p.add_argument("--pack-batch", type=int, default=2, help="packed sequences per step (TRL); "
                   "ours packs the rows those hold on average")
    p.add_argument("--max-length", type=int, default=1024)
    p.add_argument("--lr", type=float, default=1e-3)
    harness.add_machine_options(p)
    args = p.parse_args()
    harness.machine_header(p, args)
    summaries = harness.run_all(args, "bench-train-", prepare, run_config, report)
    if args.profile:
        return
    done = [s for s in summaries if "speedup" in s]
    if not done:
        print("train_throughput: no ratio (a side failed)")
        return
    print("train_throughput: " + "; ".join(
        f"vocab {s['vocab']}: {s['best_ours']} {s['speedup']:.2f}x TRL best ({s['best_trl']}) in "
        f"trained tokens/s ({s['speedup_cpu']:.2f}x per CPU-s), MFU {s['mfu']:.0%} "
        f"({s['mfu_cpu']:.0%} per CPU-s), eval loss within {s['loss_diff']:.1%}, peak RSS "
        f"{s['rss_ratio']:.2f}x TRL" for s in done))


if __name__ == "__main__":
    main()
