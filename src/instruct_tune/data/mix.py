"""Several data sources as one: `a.jsonl,b.jsonl` (concatenated) or `a.jsonl=0.7,b.jsonl=0.3`
(a mix by share). `train --data` (and `data:` in YAML, as a list or a mapping) and `curate` read
the same spec.

- Shares are weights: they are normalized to sum to 1, with a note when they did not, so
  `a=70,b=30` and `a=0.7,b=0.3` mean the same (mixture recipes are often written as weights).
- A mix of N rows takes N * share rows from each source (largest remainders, so they add up to
  N). A source with enough rows is sampled without replacement; a source with too few is repeated
  whole, plus a sample of the remainder (up-sampling, always reported).
- Without N, the mix is the largest one that needs no up-sampling: N = floor(min(rows_i / share_i)).
- A path holding a comma can be given only on its own (or as one of curate's DATA arguments).
- Sampling is seeded per source (seed, position), so the same spec and seed give the same rows,
  and rows keep their file order within a source (train shuffles anyway).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from .load import LoadResult, load_records_report

EXAMPLE = "e.g. a.jsonl=0.7,b.jsonl=0.3 (a mix by share) or a.jsonl,b.jsonl (all rows of both)"


@dataclass(frozen=True)
class SourceSpec:
    path: str
    share: float | None = None  # None: take the source as it is


@dataclass
class MixPart:
    """What a mix took from one source."""

    path: str
    share: float  # normalized
    available: int  # rows the source had
    taken: int  # rows in the mix (more than available when up-sampled)

    @property
    def upsampled(self) -> int:
        return max(0, self.taken - self.available)

    def describe(self) -> str:
        text = f"{self.path} {self.taken:,} of {self.available:,} rows (share {self.share:.3g})"
        if self.upsampled:
            reps = self.taken / self.available
            text += (f", up-sampled: {self.upsampled:,} repeated rows, each row used "
                     f"{math.floor(reps)}-{math.ceil(reps)} times")
        return text


def split_spec(spec: str | Sequence[str]) -> list[str]:
    """The entries of a spec; a path that exists is one entry even if it holds a comma."""
    if not isinstance(spec, str):
        return [e for s in spec for e in split_spec(s)]
    if "," not in spec or Path(spec).expanduser().exists():
        return [spec]
    return [e.strip() for e in spec.split(",")]


def parse_spec(spec: str | Sequence[str], option: str = "--data") -> list[SourceSpec]:
    """Parse `a.jsonl=0.7,b.jsonl=0.3` / `a.jsonl,b.jsonl` / one path; ConfigError says which entry
    is wrong and how to write it."""
    out: list[SourceSpec] = []
    for k, entry in enumerate(split_spec(spec), 1):
        where = f"{option}: entry {k} ({entry!r})"
        if not entry:
            raise ConfigError(f"{option}: entry {k} is empty (two commas in a row, or a trailing "
                              f"comma?); list sources separated by commas, {EXAMPLE}.")
        path, sep, share = entry.rpartition("=")
        if not sep or Path(entry).expanduser().exists():
            out.append(SourceSpec(entry))
            continue
        try:  # (a path with '=' in it, e.g. year=2024/, exists and was taken whole above)
            value = float(share)
        except ValueError:
            raise ConfigError(f"{where}: the share {share!r} is not a number; write PATH=SHARE, "
                              f"{EXAMPLE}.") from None
        if not path:
            raise ConfigError(f"{where}: no path before '='; write PATH=SHARE, {EXAMPLE}.")
        if not math.isfinite(value) or value <= 0:
            raise ConfigError(f"{where}: a share must be a number > 0 (got {share}); leave the "
                              "source out to take nothing from it.")
        out.append(SourceSpec(path, value))
    shared = [s for s in out if s.share is not None]
    if shared and len(shared) != len(out):
        bare = ", ".join(repr(s.path) for s in out if s.share is None)
        raise ConfigError(f"{option}: {bare} {'has' if bare.count(',') == 0 else 'have'} no share "
                          f"but other sources do; give every source a share or none, {EXAMPLE}.")
    seen: set[str] = set()
    for s in out:
        key = str(Path(s.path).expanduser().resolve()) if Path(s.path).expanduser().exists() else s.path
        if key in seen:
            raise ConfigError(f"{option}: {s.path!r} is listed twice; list each source once "
                              "(give it a larger share to take more of it).")
        seen.add(key)
    return out


def normalized(specs: Sequence[SourceSpec]) -> tuple[list[float], str | None]:
    """Shares that sum to 1, and a note when the given ones did not."""
    raw = [s.share or 0.0 for s in specs]
    total = sum(raw)
    shares = [x / total for x in raw]
    if abs(total - 1) <= 1e-6:
        return shares, None
    return shares, (f"note: shares add up to {total:g}, not 1; normalized to "
                    + ", ".join(f"{s.path}={x:.3g}" for s, x in zip(specs, shares, strict=True)))


def plan(sizes: Sequence[int], shares: Sequence[float], rows: int | None) -> list[int]:
    """Rows to take from each source: rows * share, rounded by largest remainder (ties go to the
    earlier source); rows=None: the largest total that up-samples nothing."""
    if rows is None:
        rows = min(math.floor(n / s + 1e-9) for n, s in zip(sizes, shares, strict=True))
    exact = [rows * s for s in shares]
    counts = [math.floor(x + 1e-9) for x in exact]
    order = sorted(range(len(exact)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: rows - sum(counts)]:
        counts[i] += 1
    return counts


def sample(n_available: int, n: int, rng: random.Random) -> list[int]:
    """n row indices of 0..n_available-1 in order: without replacement while possible, else every
    row k times plus a sample of the rest (each row used k or k+1 times)."""
    k, rest = divmod(n, n_available) if n_available else (0, 0)
    return sorted(list(range(n_available)) * k + rng.sample(range(n_available), rest))


def sample_mix(sizes: Sequence[int], specs: Sequence[SourceSpec], rows: int | None, seed: int,
               option: str = "--data") -> tuple[list[list[int]], list[MixPart], list[str]]:
    """Row indices per source for the mix, what each source gave, and notes (normalization)."""
    shares, note = normalized(specs)
    empty = [s.path for s, n in zip(specs, sizes, strict=True) if n == 0]
    if empty:
        raise ConfigError(f"{option}: {', '.join(empty)} has no rows to mix; drop it from the "
                          "spec or give it data.")
    counts = plan(sizes, shares, rows)
    picks = [sample(n, c, random.Random(f"mix:{seed}:{i}"))
             for i, (n, c) in enumerate(zip(sizes, counts, strict=True))]
    parts = [MixPart(s.path, x, n, c) for s, x, n, c in zip(specs, shares, sizes, counts, strict=True)]
    return picks, parts, [note] if note else []


def load_spec(spec: str, *, format: str = "auto", columns=None, skip_invalid: bool = False,
              seed: int = 0) -> LoadResult:
    """load_records_report for a spec: one source loads as before; a list is concatenated; a mix
    is sampled (seeded), with one note per source saying what it gave."""
    specs = parse_spec(spec)
    if len(specs) == 1 and specs[0].share is None:
        return load_records_report(specs[0].path, format=format, columns=columns,
                                   skip_invalid=skip_invalid)
    loaded = [load_records_report(s.path, format=format, columns=columns, skip_invalid=skip_invalid)
              for s in specs]
    notes = [n for r in loaded for n in r.notes]
    if specs[0].share is None:
        groups = [r.records for r in loaded]
    else:
        picks, parts, extra = sample_mix([len(r.records) for r in loaded], specs, None, seed)
        groups = [[r.records[i] for i in p] for r, p in zip(loaded, picks, strict=True)]
        notes += extra + [f"mix (seed {seed}): " + "; ".join(p.describe() for p in parts)]
    formats = {r.format for r in loaded}
    return LoadResult([x for g in groups for x in g], [p for r in loaded for p in r.skipped],
                      formats.pop() if len(formats) == 1 else "mixed", spec, notes)
