"""`curate` on files: load the sources, select rows (deduplicated across files), mix, write.

Writes OUT (JSON Lines: each kept row as it was read, with the same fields, column names and key
order, so alpaca stays alpaca and a `task` field stays) and OUT.manifest.json (every dropped row
with its file:line, reason and the row it duplicates or conflicts with; per-source counts; the
options). Both go to a temporary file first and are then renamed, so a failed run leaves no
half-written output. An existing OUT is replaced only with overwrite=True, and an input never.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ...data.load import load_records_report
from ...data.mix import MixPart, SourceSpec, parse_spec, sample, sample_mix
from ...data.raw import original_rows, rebuild
from ...data.records import Source
from ...errors import ConfigError
from .select import REASONS, CurateOptions, Drop, select_rows

MANIFEST_SUFFIX = ".manifest.json"
OUT_SUFFIXES = (".jsonl", ".ndjson")


@dataclass
class CurateReport:
    out: str
    manifest_path: str
    manifest: dict
    notes: list[str] = field(default_factory=list)

    def summary(self) -> list[tuple[str, int, str, str]]:
        """(reason, rows dropped, what it means, the flag that keeps them), most severe first."""
        counts = self.manifest["summary"]
        return [(r, counts[r], *REASONS[r]) for r in REASONS if counts.get(r)]


def sources_of(data: Sequence[str], mix: str | None) -> list[SourceSpec]:
    """The sources from DATA arguments and/or --mix (each a spec: see data/mix.py)."""
    if data and mix:
        raise ConfigError("curate: give the sources once, either as DATA or in --mix "
                          "(--mix a.jsonl=0.7,b.jsonl=0.3 names them and their shares).")
    if mix:
        specs = parse_spec(mix, "--mix")
        if specs[0].share is None:
            raise ConfigError(f"--mix {mix}: give each source a share, e.g. --mix "
                              "a.jsonl=0.7,b.jsonl=0.3 (or pass the files as DATA to keep all rows).")
        return specs
    if not data:
        raise ConfigError("curate needs data: instruct-tune curate DATA [DATA ...] --out clean.jsonl")
    return parse_spec(list(data), "DATA")


def check_out(out: str, inputs: Sequence[str], overwrite: bool) -> None:
    """Refuse, before anything loads, an --out that is not JSON Lines, that is or lies inside an
    input, or that exists (without overwrite)."""
    path = Path(out).expanduser()
    if path.suffix.lower() not in OUT_SUFFIXES or path.is_dir():
        raise ConfigError(f"--out {out}: curate writes JSON Lines; give a file name ending in "
                          ".jsonl, e.g. --out clean.jsonl.")
    targets = [path, Path(f"{path}{MANIFEST_SUFFIX}")]
    for src in inputs:
        s = Path(src).expanduser()
        if not s.exists():
            continue
        for t in targets:
            if s.resolve() == t.resolve():
                raise ConfigError(f"--out {out}: {t} is the input {src}; curate never writes into "
                                  "its input: choose another --out.")
            if s.is_dir() and s.resolve() in t.resolve().parents:
                raise ConfigError(f"--out {out} is inside the input directory {src}, where the next "
                                  "load of that directory would read it as data; write it elsewhere.")
    existing = [t for t in targets if t.exists()]
    if existing and not overwrite:
        raise ConfigError(f"{existing[0]} already exists; pass --overwrite to replace it, or "
                          "choose another --out.")


def curate_files(data: Sequence[str], out: str, *, mix: str | None = None, rows: int | None = None,
                 seed: int = 0, eval_data: str | None = None, tokenizer=None, template=None,
                 max_length: int = 2048, options: CurateOptions | None = None,
                 format: str = "auto", columns=None, skip_invalid: bool = True,
                 overwrite: bool = False, settings: dict | None = None,
                 progress: Callable[[str], None] | None = None) -> CurateReport:
    """Curate DATA (or the --mix sources) into `out` and `out`.manifest.json."""
    step = progress or (lambda name: None)
    specs = sources_of(data, mix)
    check_out(out, [s.path for s in specs] + ([eval_data] if eval_data else []), overwrite)
    loaded = []
    for s in specs:
        step(f"loading {s.path}")
        loaded.append(load_records_report(s.path, format=format, columns=columns,
                                          skip_invalid=skip_invalid))
    records = [r for lr in loaded for r in lr.records]
    origin = [k for k, lr in enumerate(loaded) for _ in lr.records]
    notes = [n for lr in loaded for n in lr.notes]
    eval_records = None
    if eval_data:
        step(f"loading {eval_data}")
        ev = load_records_report(eval_data, format=format, columns=columns, skip_invalid=True)
        eval_records, notes = ev.records, notes + [f"eval: {n}" for n in ev.notes]
    sel = select_rows(records, options=options, eval_records=eval_records, tokenizer=tokenizer,
                      template=template, max_length=max_length, progress=step)
    pools = [[i for i in sel.kept if origin[i] == k] for k in range(len(specs))]
    picks, parts, mix_notes = _mix(pools, specs, rows, seed)
    notes += mix_notes

    step("writing")
    formats = sorted({lr.format for lr in loaded})
    chosen = [records[pool[i]] for pool, pick in zip(pools, picks, strict=True) for i in pick]
    if len(formats) == 1 and formats[0] != "mixed":
        rows_out = original_rows(chosen, formats[0])  # as read: same fields, names, order
    else:  # one file holds one format: chat messages, the one every record fits
        rows_out = [rebuild(r, "chat") for r in chosen]
        notes.append(f"note: the sources have different formats ({', '.join(formats)}); every "
                     "row is written as chat messages (extra fields kept)")
    written = [json.dumps(row, ensure_ascii=False, default=str) for row in rows_out]
    drops = sorted([(k, Drop(Source(p.path, p.line or 0), "invalid", p.message))
                    for k, lr in enumerate(loaded) for p in lr.skipped]
                   + [(origin[x.row], x) for x in sel.drops],
                   key=lambda kx: (kx[0], kx[1].source.path, kx[1].source.line))
    summary = Counter(x.reason for _, x in drops)
    per_source = []
    for k, (s, lr) in enumerate(zip(specs, loaded, strict=True)):
        mine = Counter(x.reason for k2, x in drops if k2 == k)
        entry = {"path": s.path, "format": lr.format, "rows_read": len(lr.records) + len(lr.skipped),
                 "dropped": {r: mine[r] for r in REASONS if mine[r]},
                 "kept": len(pools[k]), "written": len(picks[k])}
        if parts:
            entry |= {"share": round(parts[k].share, 6), "upsampled": parts[k].upsampled}
        per_source.append(entry)
    manifest = {
        "out": out, "rows_read": len(records) + sum(len(lr.skipped) for lr in loaded),
        "rows_written": len(written), "sources": per_source, "eval_data": eval_data,
        "settings": settings or {}, "summary": {r: summary[r] for r in REASONS if summary[r]},
        "near_duplicates": sel.near, "mix": None if not (parts or rows) else
        {"seed": seed, "rows": rows, "parts": [p.describe() for p in parts]},
        "notes": notes, "dropped": [x.to_dict() for _, x in drops]}
    manifest_path = f"{out}{MANIFEST_SUFFIX}"
    _write_atomic(Path(out).expanduser(), "".join(line + "\n" for line in written))
    _write_atomic(Path(manifest_path).expanduser(),
                  json.dumps(manifest, ensure_ascii=False, indent=1) + "\n")
    return CurateReport(out, manifest_path, manifest, notes)


def _mix(pools: list[list[int]], specs: list[SourceSpec], rows: int | None,
         seed: int) -> tuple[list[list[int]], list[MixPart], list[str]]:
    """Which positions of each pool go into the output: a mix by share, N rows drawn from all
    sources alike (rows without shares), or everything."""
    if specs[0].share is not None:
        return sample_mix([len(p) for p in pools], specs, rows, seed, "--mix")
    if rows is None:
        return [list(range(len(p))) for p in pools], [], []
    flat = [(k, i) for k, p in enumerate(pools) for i in range(len(p))]
    if not flat:
        raise ConfigError("curate --rows: no rows are left after curation to sample from.")
    chosen = [flat[j] for j in sample(len(flat), rows, random.Random(f"mix:{seed}:all"))]
    picks = [[i for k2, i in chosen if k2 == k] for k in range(len(pools))]
    note = [] if rows <= len(flat) else [
        f"note: --rows {rows:,} is more than the {len(flat):,} rows left after curation: "
        f"{rows - len(flat):,} rows are repeats (up-sampled)"]
    return picks, [], note


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
