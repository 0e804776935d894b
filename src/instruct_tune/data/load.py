"""Load a data source into validated `Record`s; every problem is reported with file, line, field.

`load_records_report` resolves the source (a file, a directory of files, or a `datasets` name),
reads each file into rows (readers.py), maps and validates each row (validate.py), and only then
raises one DataError listing every problem, so the user fixes everything in one round trip.
"""

from __future__ import annotations

import difflib
import gc
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError, Problem, strip_skip_advice
from .readers import SUFFIXES, Row, fail, read_file
from .records import Record, Source
from .validate import (
    apply_columns,
    check_format,
    column_problems,
    detect_format,
    missing_mapped_columns,
    parse_columns,
    summarize_problems,
    to_record,
    unmapped_input_note,
)

__all__ = ["LoadResult", "format_summary", "load_records", "load_records_report",
           "summarize_problems"]

SPLIT_TRAIN = {"train", "training"}
SPLIT_HELD = {"test", "testing", "validation", "valid", "val", "dev", "eval", "evaluation"}
METADATA_FILES = {"dataset_info.json", "dataset_infos.json", "state.json", "dataset_dict.json"}


@dataclass
class LoadResult:
    records: list[Record]
    skipped: list[Problem]  # one per dropped row (its first problem); empty unless skip_invalid
    format: str = ""  # alpaca / prompt_completion / chat, or "mixed" across a directory's files
    source: str = ""
    notes: list[str] = field(default_factory=list)  # e.g. which split files were ignored

    def summary(self) -> str:
        return format_summary(self)


def load_records(source: str | Path, *, format: str = "auto",
                 columns: str | Mapping[str, str] | None = None,
                 skip_invalid: bool = False) -> list[Record]:
    """Load and validate every row; raise DataError listing all problems (unless skip_invalid)."""
    return load_records_report(source, format=format, columns=columns,
                               skip_invalid=skip_invalid).records


def load_records_report(source: str | Path, *, format: str = "auto",
                        columns: str | Mapping[str, str] | None = None,
                        skip_invalid: bool = False) -> LoadResult:
    """Like load_records, and also return the rows skipped (with skip_invalid) and why."""
    # Loading makes millions of small acyclic objects; CPython's cyclic GC would rescan them over
    # and over (about a third of the load time on 52k rows), so it is paused while we build them.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _load(str(source), check_format(format), parse_columns(columns), skip_invalid)
    finally:
        if gc_was_enabled:
            gc.enable()


def _load(source: str, fmt: str, mapping: dict[str, str], skip_invalid: bool) -> LoadResult:
    records, skipped, fmt_name, notes = read_rows(
        source, fmt, mapping, skip_invalid, detect=detect_format, check_columns=column_problems,
        convert=to_record, kind=Record, noun="rows")
    return LoadResult(records, skipped, fmt_name, source, notes)


def read_rows(source: str, fmt: str, mapping: dict[str, str], skip_invalid: bool, *,
              detect: Callable[[set[str]], str | None],
              check_columns: Callable[[str, set[str], str | None, dict], list[Problem]],
              convert: Callable[[dict, Source, str, dict], object], kind: type, noun: str,
              refine: Callable[[str, list[tuple[int, dict]]], str] | None = None
              ) -> tuple[list, list[Problem], str, list[str]]:
    """Read every row of every file of `source` into `kind` objects (SFT records or preference
    pairs): the format per file (`fmt`, or `detect` from the columns, then `refine` from the
    rows), the columns checked once per file, each row converted by `convert` (a `kind` or its
    problems). Returns (objects, the first problem of each skipped row, format, notes); raises
    one DataError listing every problem unless skip_invalid."""
    notes: list[str] = []
    records: list = []
    bad: list[list[Problem]] = []  # per invalid row, all its problems
    formats: set[str] = set()
    for name, rows in _open(source, notes):
        parsed, file_bad = [], []
        raw_keys: dict[str, None] = {}  # the file's own column names, in order (for --columns)
        for line, row in rows:
            if isinstance(row, Problem):
                file_bad.append((line, [row]))
            elif not isinstance(row, dict):
                file_bad.append((line, [Problem(name, line, None, "expected an object with named "
                                                "fields, got a JSON value of another kind; "
                                                "write one {...} record per row")]))
            else:
                if mapping:
                    raw_keys.update(dict.fromkeys(row))
                parsed.append((line, apply_columns(row, mapping)))
        if not parsed and not file_bad:
            fail(name, "no rows found", "the file has no data rows; check the path")
        if parsed:
            keys = set().union(*(row.keys() for _, row in parsed))
            file_fmt = fmt if fmt != "auto" else detect(keys)
            problems = missing_mapped_columns(name, raw_keys, mapping) if mapping else []
            if problems := problems or check_columns(name, keys, file_fmt, mapping):
                raise DataError(problems, hint="Nothing was loaded: check --columns/--format.")
            if note := unmapped_input_note(keys, file_fmt, mapping):
                notes.append(f"{name}: {note}")
            if refine is not None and fmt == "auto":
                file_fmt = refine(file_fmt, parsed)
            formats.add(file_fmt)
            for line, row in parsed:
                rec = convert(row, Source(name, line), file_fmt, mapping)
                if isinstance(rec, kind):
                    records.append(rec)
                else:
                    file_bad.append((line, rec))
        bad.extend(problems for _, problems in sorted(file_bad, key=lambda x: x[0]))
    if skip_invalid:  # already on: advice to pass it would only confuse
        bad = [[_without_skip_advice(p) for p in row] for row in bad]
    all_problems = [p for row in bad for p in row]
    if bad and not records:
        rows = "the only row has" if len(bad) == 1 else f"all {len(bad):,} rows have"
        raise DataError(all_problems, hint=f"No valid {noun}: {rows} problems; nothing to load.")
    if bad and not skip_invalid:
        raise DataError(all_problems)
    return records, [row[0] for row in bad], formats.pop() if len(formats) == 1 else "mixed", notes


def _without_skip_advice(p: Problem) -> Problem:
    """The problem with its 'or pass --skip-invalid ...' advice cut (for runs that pass it)."""
    msg = strip_skip_advice(p.message)
    return p if msg == p.message else Problem(p.path, p.line, p.field, msg)


def format_summary(result: LoadResult, max_reasons: int = 5) -> str:
    """One line for the CLI: 'Loaded 1,000 rows (alpaca) from x.jsonl; skipped 2 invalid rows: ...'."""
    n = len(result.records)
    text = f"Loaded {n:,} {'row' if n == 1 else 'rows'} ({result.format}) from {result.source}"
    if result.skipped:
        k = len(result.skipped)
        reasons = summarize_problems(result.skipped)
        shown = ", ".join(f"{r} ({c:,})" for r, c in reasons[:max_reasons])
        more = f", {len(reasons) - max_reasons} more reasons" if len(reasons) > max_reasons else ""
        text += f"; skipped {k:,} invalid {'row' if k == 1 else 'rows'}: {shown}{more}"
    return "; ".join([text, *result.notes])


def _open(source: str, notes: list[str]) -> list[tuple[str, Iterator[Row]]]:
    """Resolve a source into (display name, row iterator) per data file."""
    path = Path(source).expanduser()
    try:
        if path.is_file():
            return [(source, read_file(path, source))]
        if path.is_dir():
            return _open_dir(path, source, notes)
        if path.exists():
            fail(source, "is not a regular file or directory", "point at a data file")
    except OSError as e:  # e.g. a name too long, or a directory we may not list
        fail(source, f"cannot open ({e.strerror})", "check the path and its permissions")
    # Hub names look like "owner/name"; anything path-like that is missing is a typo, not a name.
    if path.suffix.lower() in SUFFIXES or source.startswith((".", "/", "~")) \
            or source.count("/") > 1:
        close = []
        if path.parent.is_dir():
            close = difflib.get_close_matches(path.name, [p.name for p in path.parent.iterdir()])
        hint = f"did you mean: {', '.join(close)}?" if close else "check the path"
        fail(source, "no such file or directory", hint)
    return [(source, _read_datasets(source, saved=False, notes=notes))]


def _open_dir(path: Path, name: str, notes: list[str]) -> list[tuple[str, Iterator[Row]]]:
    if any((path / f).is_file() for f in ("state.json", "dataset_dict.json")):
        return [(name, _read_datasets(str(path), saved=True, notes=notes))]  # written by save_to_disk
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file()
                   and p.name not in METADATA_FILES
                   and not any(part.startswith(".") for part in p.relative_to(path).parts))
    if not files:
        found = ", ".join(sorted(p.name for p in path.iterdir())[:10]) or "nothing"
        fail(name, f"no data files in this directory (found: {found})",
             "put .jsonl, .json, .csv, .tsv or .parquet files in it, or point at a file")

    def tokens(p: Path) -> set[str]:
        return set(re.split(r"[-._/\\ ]+", str(p.relative_to(path)).lower()))

    train = [p for p in files if tokens(p) & SPLIT_TRAIN]
    held = [p for p in files if tokens(p) & SPLIT_HELD and p not in train]
    if train and held:
        notes.append(f"used the train split only, ignored {', '.join(p.name for p in held)} "
                     "(pass a file path to load it)")
        files = train
    names = [str(Path(name) / p.relative_to(path)) for p in files]
    return [(n, read_file(p, n)) for n, p in zip(names, files, strict=True)]


def _read_datasets(source: str, saved: bool, notes: list[str]) -> Iterator[Row]:
    """The `datasets` path, kept for hub names and dataset directories; rows are numbered."""
    try:
        import datasets

        ds = datasets.load_from_disk(source) if saved else datasets.load_dataset(source)
    except Exception as e:  # datasets raises a zoo of types (hub, offline, file, builder errors)
        msg = (str(e).strip().splitlines() or [""])[0][:200]
        fail(source, f"not a local file, and datasets could not load it ({type(e).__name__}: "
             f"{msg})", "check the path or dataset name, or pass a .jsonl/.json/.csv/.parquet file")
    if isinstance(ds, Mapping):
        splits = list(ds)
        if "train" not in splits and len(splits) != 1:
            fail(source, f"has splits {', '.join(splits)} and none is 'train'",
                 "load one split explicitly by passing its data file")
        split = "train" if "train" in splits else splits[0]
        if len(splits) > 1:
            others = ", ".join(s for s in splits if s != split)
            notes.append(f"used the train split only, ignored {others}")
        ds = ds[split]
    yield from enumerate(ds, 1)


# Public names for loaders of other record kinds (data/pairs.py): the same sources (file,
# directory, datasets name) read the same way, and the same --skip-invalid advice handling.
open_source = _open
