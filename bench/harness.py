"""The parent side of the training benchmarks (train_throughput.py, dpo_throughput.py): the machine
header, one subprocess per config, configs interleaved with the best of --repeat rounds kept.

The worker side (clock, profiler, peak RSS and matmul peak around one run) is
`throughput_workers.serve`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import common


def add_machine_options(p: argparse.ArgumentParser) -> None:
    """--precision, --allow-slow-bf16, --threads, --repeat, --seed: the same for every training bench."""
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="both tools train in this precision (bf16: autocast, fp32 master weights); "
                   "MFU is against the same dtype's matmul peak")
    p.add_argument("--allow-slow-bf16", action="store_true",
                   help="run --precision bf16 on a CPU without native bf16 anyway (~70x slower)")
    # One thread by default: with other jobs on the machine, multi-threaded steps stall at every
    # OpenMP barrier whose partner thread is descheduled, which distorts ratios between configs.
    p.add_argument("--threads", type=int, default=1, help="torch threads per config (default 1)")
    p.add_argument("--repeat", type=int, default=1, help="rounds; the best time of each is kept")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile", metavar="CONFIG", help="only profile CONFIG (first vocab) with "
                   "torch.profiler and print where the time goes")


def machine_header(p: argparse.ArgumentParser, args) -> dict[str, float]:
    """Check --precision as `train` does, print versions, load and matmul peaks; returns the peaks
    by dtype name (FLOP/s with args.threads threads)."""
    from instruct_tune.errors import ConfigError
    from instruct_tune.hardware import check_precision

    try:  # the check train --precision bf16 makes, before minutes of preparation
        slow = check_precision(args.precision, "cpu", args.allow_slow_bf16)
    except ConfigError as e:
        p.error(str(e))
    import torch

    torch.set_num_threads(args.threads)
    import transformers
    import trl

    print(f"torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}")
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load > 0.5 * cores:
        print(f"warning: load average {load:.1f} on {cores} cores: other jobs share this machine, so "
              "wall times swing; the CPU-second columns are steadier (with --threads 1)")
    if slow:
        print(f"warning: {slow}")
    dtypes = common.peak_dtypes(args.precision)
    peaks = {dt: common.matmul_peak(getattr(torch, dt)) for dt in dtypes}
    print(f"matmul peak ({args.threads} threads): " + ", ".join(
        f"{common.SHORT[dt]} {peaks[dt] / 1e9:.0f} GFLOP/s" for dt in dtypes)
        + ("" if "bfloat16" in dtypes else " (bf16 skipped: not native on this CPU)"))
    return peaks


def run_worker(worker: str, spec: dict, spec_path: Path, *, profile: bool = False,
               timeout: int = 900) -> dict:
    """Run `python worker spec_path` with spec['threads'] threads; its result, or {'error': ...}.
    The worker writes spec['out'] + '.result.json'; with profile its output goes to the console."""
    spec_path.write_text(json.dumps(spec))
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1",
               OMP_NUM_THREADS=str(spec["threads"]), TRANSFORMERS_VERBOSITY="error",
               HF_DATASETS_DISABLE_PROGRESS_BARS="1", TQDM_DISABLE="1")
    proc = subprocess.run([sys.executable, worker, str(spec_path)], env=env,
                          capture_output=not profile, text=True, timeout=timeout)
    result_path = Path(spec["out"] + ".result.json")
    if proc.returncode != 0 or not result_path.is_file():
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-3:]
        return {"config": spec["config"], "error": " | ".join(tail)[-300:] or f"exit {proc.returncode}"}
    return json.loads(result_path.read_text())


def best_of(configs: Sequence[str], repeat: int, run: Callable[[str], dict]) -> dict[str, dict]:
    """Run every config `repeat` times, interleaved (order reversed every other round, so machine
    load drifts hit all), keeping each config's fastest successful run (by `window_s`)."""
    results: dict[str, dict] = {}
    for rnd in range(repeat):
        for name in configs if rnd % 2 == 0 else configs[::-1]:
            r = run(name)
            print(f"  {name}: {r.get('window_s', float('nan')):.1f}s {r.get('error', '')}", flush=True)
            prev = results.get(name)
            if prev is None or "error" in prev or r.get("window_s", 1e9) < prev["window_s"]:
                results[name] = r
    return results


def run_all(args, prefix: str, prepare: Callable, run_config: Callable,
            report: Callable[[dict, dict], dict]) -> list[dict]:
    """For each --vocab: `prepare(vocab, args, work)`, then every --configs config best of
    --repeat (`run_config(name, data, args, work, profile=False)`) and `report(data, results)`;
    returns the reports. With --profile: that config once, under the profiler, and [] ."""
    configs = [c for c in args.configs.split(",") if c]
    summaries = []
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        work = Path(tmp)
        for vocab in (int(v) for v in args.vocab.split(",")):
            t = time.perf_counter()
            data = prepare(vocab, args, work)
            print(f"[vocab {vocab}: prepared in {time.perf_counter() - t:.0f}s]", flush=True)
            if args.profile:
                r = run_config(args.profile, data, args, work, profile=True)
                print(f"{args.profile}: {r.get('window_s', float('nan')):.1f}s wall, "
                      f"{r.get('cpu_s', float('nan')):.1f}s CPU in the timed window {r.get('error', '')}")
                return []
            results = best_of(configs, args.repeat,
                              lambda name, data=data: run_config(name, data, args, work))
            summaries.append(report(data, results))
    return summaries
