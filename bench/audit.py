"""Audit 52,000 Alpaca-sized rows (plus a 1,000-row eval set for contamination) and show how the
time grows with the number of rows.

Target (issue 6): <= 60 s for 52,000 rows on 2 cores, growing near-linearly (exponent ~1, not 2).
Rows are synthetic but shaped like Alpaca: varied tasks and phrasings, 40% with an input, outputs
of 20-200 words. The baseline, run in the same process on the same 52,000 instructions, is the
near-duplicate search done the textbook way with datasketch (`MinHash.bulk` + `MinHashLSH` insert
and query); the audit's own search is numpy-vectorised MinHash + banding.

    python bench/audit.py [--rows 52000] [--no-baseline] [--curate-only] [--long-prompts-only]

The last line compares `curate` with `audit` on the same file (issue 15: about the same time).

Long prompts (issue 16): the same scaling on 55,000 prompt/completion rows whose prompts are task
templates around 30-110-word documents (bench/prompt_rows.py), then `instruct-tune audit FILE` as
a whole process on all of them. Target: <= 45 s on 2 cores (before: ~127 s wall, 60 s CPU, most of
it comparing 1,000 sampled prompts with all 55,000 by ROUGE-L).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from instruct_tune.audit.neardup import Shingles, near_duplicate_groups  # noqa: E402
from instruct_tune.audit.report import audit  # noqa: E402
from instruct_tune.audit.words import Tokens, Vocab, ngram_hashes, norm, words  # noqa: E402
from instruct_tune.data.records import Record, Source  # noqa: E402
from tests.audit.synth import Synth  # noqa: E402

LIMIT_S = 60.0
LONG_LIMIT_S = 45.0


def eval_set(train: list[Record], n: int = 1000) -> list[Record]:
    """Fresh rows plus 2% copied from training (so the contamination path does real work)."""
    fresh = Synth(1).records(n - n // 50, "eval.jsonl")
    copied = [Record(r.messages, Source("eval.jsonl", len(fresh) + k + 1))
              for k, r in enumerate(train[:: max(1, len(train) // (n // 50))][: n // 50])]
    return fresh + copied


def timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def datasketch_near_dups(instructions: list[str]) -> int:
    """The textbook way: datasketch MinHash per row over word bigrams, LSH insert, then query."""
    from datasketch import MinHash, MinHashLSH

    shingles = []
    for t in instructions:
        w = words(t)
        shingles.append([f"{a} {b}".encode() for a, b in zip(w, w[1:], strict=False)] or [b""])
    lsh = MinHashLSH(threshold=0.8, num_perm=128)
    hashes = MinHash.bulk(shingles, num_perm=128)
    with lsh.insertion_session() as session:
        for i, m in enumerate(hashes):
            session.insert(i, m)
    return sum(len(lsh.query(m)) - 1 for m in hashes)


def ours_near_dups(instructions: list[str]) -> int:
    tok = Tokens.of(instructions, Vocab())
    groups, _ = near_duplicate_groups(Shingles(*ngram_hashes(tok, 2), len(instructions)), 0.8)
    return len(groups)


# --- curate vs audit (issue 15): the same rows from a file, each command's whole work ----------
def curate_vs_audit(train: list[Record], ev: list[Record]) -> float:
    """Time `audit` (load + audit, as the command does before printing) and `curate` (load +
    select + write the output and manifest) on the same JSONL file with the same eval set, in
    turn, and return curate's time over audit's. Rows are the synthetic ones plus 2% exact
    duplicates and 1% with a template marker in the output, so curate has rows to drop."""
    import json
    import tempfile

    from instruct_tune.audit.curate import curate_files
    from instruct_tune.data.load import load_records_report

    def row(r: Record) -> str:
        return json.dumps({"instruction": r.instruction, "input": r.input, "output": r.output})

    rows = [row(r) for r in train] + [row(r) for r in train[:: 50]]
    rows += [json.dumps({"instruction": r.instruction, "output": "### Response: " + r.output})
             for r in train[1:: 100]]
    with tempfile.TemporaryDirectory() as tmp:
        data, evf = Path(tmp, "train.jsonl"), Path(tmp, "eval.jsonl")
        data.write_text("\n".join(rows) + "\n")
        evf.write_text("\n".join(row(r) for r in ev) + "\n")

        def run_audit():
            loaded = load_records_report(str(data), skip_invalid=True)
            return audit(loaded.records, eval_records=load_records_report(str(evf)).records,
                         skipped=loaded.skipped)

        _, audit_s, _ = timed(run_audit)
        report, curate_s, _ = timed(lambda: curate_files([str(data)], str(Path(tmp, "out.jsonl")),
                                                         eval_data=str(evf)))
    m = report.manifest
    print(f"curate {len(rows):,} rows: {curate_s:.1f} s wall, audit {audit_s:.1f} s "
          f"(same file and eval set); dropped {sum(m['summary'].values()):,} "
          f"({', '.join(f'{k} {v:,}' for k, v in m['summary'].items())}), wrote {m['rows_written']:,}")
    print(f"SUMMARY curate/audit time on {len(rows):,} rows: {curate_s / audit_s:.2f}x "
          f"({curate_s:.1f} s vs {audit_s:.1f} s)")
    return curate_s / audit_s


# --- long templated prompts (issue 16): scaling in-process, then the whole command -------------
def long_prompts(rows: int = 55_000) -> bool:
    import json
    import resource
    import subprocess
    import tempfile

    sys.path.insert(0, str(ROOT / "bench"))
    from prompt_rows import prompt_rows

    data = prompt_rows(rows)
    records = [Record.alpaca(r["prompt"], r["completion"], source=Source("rows.jsonl", i + 1))
               for i, r in enumerate(data)]
    sizes = [n for n in (5_000, 13_750, 27_500, 55_000) if n < rows] + [rows]
    walls, cpus = [], []
    for n in sizes:
        _, wall, cpu = timed(lambda n=n: audit(records[:n]))
        walls.append(wall)
        cpus.append(cpu)
        print(f"  long prompts {n:>7,} rows: {wall:6.2f} s wall, {cpu:6.2f} s CPU")
    exponent = float(np.polyfit(np.log(sizes), np.log(walls), 1)[0])
    cpu_exp = float(np.polyfit(np.log(sizes), np.log(cpus), 1)[0])
    print(f"  growth exponent on long-prompt rows: {exponent:.2f} wall, {cpu_exp:.2f} CPU")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "rows.jsonl")
        path.write_text("".join(json.dumps(r) + "\n" for r in data))
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "instruct_tune.cli", "audit", str(path)],
                       capture_output=True, check=True)
        whole = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    whole_cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    ok = whole <= LONG_LIMIT_S and exponent < 1.3
    print(f"SUMMARY audit of {rows:,} long-prompt rows as a whole process: {whole:.1f} s wall, "
          f"{whole_cpu:.1f} s CPU ({whole / LONG_LIMIT_S:.2f} of the {LONG_LIMIT_S:.0f} s budget; "
          f"~127 s before), time x{walls[-1] / walls[0]:.1f} for rows x{sizes[-1] / sizes[0]:.1f} "
          f"(exponent {exponent:.2f}): {'PASS' if ok else 'FAIL'}")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=52_000)
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--curate-only", action="store_true", help="only the curate/audit ratio")
    ap.add_argument("--long-prompts-only", action="store_true",
                    help="only the long-prompt scaling and whole-process audit")
    ap.add_argument("--long-rows", type=int, default=55_000)
    args = ap.parse_args()
    if args.curate_only:
        train = Synth(0).records(args.rows)
        return 0 if curate_vs_audit(train, eval_set(train)) <= 1.5 else 1
    if args.long_prompts_only:
        return 0 if long_prompts(args.long_rows) else 1

    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    train, gen_s, _ = timed(lambda: Synth(0).records(args.rows))
    ev = eval_set(train)
    print(f"synthesized {len(train):,} rows in {gen_s:.1f}s "
          f"(median output {np.median([len(r.output.split()) for r in train]):.0f} words)")

    sizes = [n for n in (5_000, 13_000, 26_000, 52_000) if n <= args.rows] or [args.rows]
    walls, cpus = [], []
    report = None
    for n in sizes:
        report, wall, cpu = timed(lambda n=n: audit(train[:n], eval_records=ev))
        walls.append(wall)
        cpus.append(cpu)
        print(f"  {n:>7,} rows: {wall:6.2f} s wall, {cpu:6.2f} s CPU, "
              f"{n / wall:>8,.0f} rows/s")
    exponent = float(np.polyfit(np.log(sizes), np.log(walls), 1)[0]) if len(sizes) > 1 else 1.0
    cpu_exp = float(np.polyfit(np.log(sizes), np.log(cpus), 1)[0]) if len(sizes) > 1 else 1.0
    print(f"growth exponent (log time vs log rows): {exponent:.2f} wall, {cpu_exp:.2f} CPU "
          "(1 = linear, 2 = quadratic)")
    for name, lever in report.levers.items():
        print(f"  {name:<19} {lever.status:<8} {lever.verdict}")

    speedup = ""
    if not args.no_baseline:
        distinct = list(dict.fromkeys(norm(r.instruction) for r in train))
        _, base_s, _ = timed(lambda: datasketch_near_dups(distinct))
        _, ours_s, _ = timed(lambda: ours_near_dups(distinct))
        print(f"near-duplicate search on {len(distinct):,} instructions: datasketch {base_s:.2f} s, "
              f"instruct-tune {ours_s:.2f} s ({base_s / ours_s:.1f}x)")
        speedup = f", near-dup search {base_s / ours_s:.1f}x datasketch"

    ok = walls[-1] <= LIMIT_S and exponent < 1.3
    print(f"SUMMARY audit {sizes[-1]:,} rows: {walls[-1]:.1f} s wall ({walls[-1] / LIMIT_S:.2f} of "
          f"the {LIMIT_S:.0f} s budget), time x{walls[-1] / walls[0]:.1f} for rows "
          f"x{sizes[-1] / sizes[0]:.1f} (exponent {exponent:.2f}){speedup}: "
          f"{'PASS' if ok else 'FAIL'}")
    curate_vs_audit(train, ev)  # issue 15: curate should take about as long as audit
    long_ok = long_prompts(args.long_rows)
    return 0 if ok and long_ok else 1


if __name__ == "__main__":
    sys.exit(main())
