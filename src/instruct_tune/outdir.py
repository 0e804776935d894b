"""One guard for every directory a command writes: train --out, demo --out, export --to (a later
command that writes a directory adds its Layout below and calls `guard`).

    guard(out, layout, flag=, overwrite=, resume=, inputs=)  before anything heavy loads: check,
                                                              then claim (outdir_lock.py)
    prepare(out, layout, overwrite=, resume=)                 when writing starts (replaces)
    release(out)                                              at the end (outdir_lock.py)

Every directory a command writes gets a marker file, DIR/.instruct-tune (JSON: the command, the
version, for export the entries it wrote). --overwrite replaces only a directory this tool wrote
for the same command: one with that marker, or (written by a version before markers) with that
command's old layout (see the _legacy_* functions), and only if every top-level entry in it is one
that command writes. Whatever it holds, --overwrite never replaces:
  - the home directory, the working directory, or a parent of either;
  - a git work tree: a directory that has .git, or holds one at any depth (a directory *inside* a
    work tree, e.g. repo/runs/a, is fine: runs often live in their project);
  - a directory a command reads from (`inputs`, e.g. export's model directory);
  - a directory another live run holds (its lock), at the top or nested (demo's train/).
Refusals name what is there ("holds 2 entries this tool did not write: notes.txt, src/").
Only top-level names are compared with the layout; below them only .git and locks are looked
for. Cheap to import: the CLI runs it before torch loads.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

from . import __version__
from .errors import ConfigError
from .outdir_lock import LOCK, claim, holder, in_use_error, is_main_process, release

MARKER = ".instruct-tune"
OURS = frozenset({MARKER, LOCK})  # never content: an empty run dir may hold these


@dataclass(frozen=True)
class Layout:
    """What one command writes at the top of its directory."""

    command: str
    noun: str  # "a training run": what --overwrite may replace
    names: tuple[str, ...]  # fnmatch patterns of the top-level entries it writes
    legacy: Callable[[Path, set[str]], bool]  # a directory of a version before markers?
    resumable: bool = False


# Directories written before the marker existed have none: these old run markers make them ours.
def _legacy_train(d: Path, names: set[str]) -> bool:
    # create_output_dir wrote config.yaml and opened metrics.jsonl together, after loading
    return "config.yaml" in names and bool(names & {"metrics.jsonl", "checkpoints", "final"})


def _legacy_demo(d: Path, names: set[str]) -> bool:
    if "report.json" in names:
        return True
    train, data = d / "train", d / "data"
    if train.is_dir() and _legacy_train(train, {p.name for p in train.iterdir()}):
        return True
    # data/ alone is too common a name to be ours: it must hold only the demo's task files
    from .demo.tasks import SPLITS

    files = {p.name for p in data.iterdir()} if data.is_dir() else set()
    return bool(files) and files <= {f"{s}.jsonl" for s in SPLITS}


def _legacy_export(d: Path, names: set[str]) -> bool:
    return bool(names & {"config.json", "adapter_config.json"}) and "template.json" in names


# What transformers/peft/instruct-tune save in a model directory (exports of older versions).
MODEL_FILES = ("config.json", "generation_config.json", "adapter_config.json", "template.json",
               "chat_template.jinja", "chat_template.json", "tokenizer.json",
               "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "vocab.json",
               "vocab.txt", "merges.txt", "*.model", "*.safetensors", "*.safetensors.index.json",
               "README.md")
TRAIN = Layout("train", "a training run", ("config.yaml", ".config.yaml.tmp", "metrics.jsonl",
               "metrics.jsonl.tmp", "checkpoints", "final", ".tmp-final", "eval.json",
               "tensorboard", "wandb", "report.html"),
               _legacy_train, resumable=True)
DEMO = Layout("demo", "a demo output", ("report.json", "report.md", "report.html", "loss_curve.png",
              "audit.json", "data", "eval", "train", "prefer", "prefer_control"), _legacy_demo)
EXPORT = Layout("export", "an export", MODEL_FILES, _legacy_export)


def guard(out: str | os.PathLike, layout: Layout, *, flag: str = "--out", overwrite: bool = False,
          resume: bool = False, inputs: Iterable[tuple[str, str | os.PathLike]] = ()) -> Path:
    """`check`, then claim `out` for this process (creating it); returns it as a Path."""
    out = Path(out)
    check(out, layout, flag=flag, overwrite=overwrite, resume=resume, inputs=inputs)
    claim(out, f"instruct-tune {layout.command}", flag)
    return out


def check(out: Path, layout: Layout, *, flag: str = "--out", overwrite: bool = False,
          resume: bool = False, inputs: Iterable[tuple[str, str | os.PathLike]] = ()) -> None:
    """Raise ConfigError if `layout.command` may not write `out` with these flags."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{flag} {out} is a file; give a directory.")
    for what, path in inputs:
        a, b = out.resolve(), Path(path).resolve()
        if Path(path).exists() and (a == b or a in b.parents or b in a.parents):
            raise ConfigError(f"{flag} {out} overlaps {what} {path}; choose another {flag}.")
    if not out.is_dir():
        return  # claim creates it (and finds out whether it can)
    if is_main_process() and (h := holder(out)) and not h.is_me():
        raise in_use_error(out, flag, h)
    entries = {p.name for p in out.iterdir()} - OURS
    if resume or not (entries or overwrite):
        return  # nothing will be deleted
    why = _why_not_replaceable(out, layout, entries)
    if entries and not overwrite:
        if why:
            raise ConfigError(f"{flag} {out} is not empty, and --overwrite would not replace it: "
                              f"{why}. Choose a new {flag}.")
        resume_hint = "--resume to continue that run, " if layout.resumable else ""
        raise ConfigError(f"{flag} {out} is not empty. Pass {resume_hint}--overwrite to replace "
                          f"it, or choose a new {flag}.")
    if why:
        raise ConfigError(f"--overwrite will not replace {flag} {out}: {why}. Choose a new {flag}.")


def _why_not_replaceable(out: Path, layout: Layout, entries: set[str]) -> str | None:
    real = out.resolve()
    for place, p in (("your home directory", Path.home()), ("the working directory", Path.cwd())):
        if real == p.resolve():
            return f"it is {place}"
        if real in p.resolve().parents:
            return f"it holds {place} ({p})"
    if (out / ".git").exists():
        return "it is a git work tree (it has .git)"
    if not entries:
        return None
    mark = read_marker(out)
    if mark is not None and mark.get("command") != layout.command:
        return (f"it holds an instruct-tune {mark.get('command')} output, and --overwrite "
                f"replaces only {layout.noun}")
    allowed = layout.names + tuple(mark.get("entries") or ()) if mark else (
        layout.names if layout.legacy(out, entries) else ())
    foreign = sorted(e for e in entries if not any(fnmatch(e, p) for p in allowed))
    if foreign:
        shown = [f"{e}/" if (out / e).is_dir() else e for e in foreign[:5]]
        return (f"it holds {len(foreign)} {'entry' if len(foreign) == 1 else 'entries'} this tool "
                f"did not write: {', '.join(shown)}{', ...' if len(foreign) > 5 else ''} "
                f"(--overwrite replaces only {layout.noun} that instruct-tune wrote)")
    return _nested_problem(out)


def _nested_problem(out: Path) -> str | None:
    """A .git or another live run's lock below `out` (only our own layouts get here: small)."""
    for dirpath, dirnames, filenames in os.walk(out):
        here = Path(dirpath)
        if ".git" in dirnames or ".git" in filenames:
            return f"it holds a git work tree ({here})"
        if LOCK in filenames and here != out and (h := holder(here)) and not h.is_me():
            return f"{here} is in use by PID {h.pid} since {h.when()} (`{h.command}`)"
    return None


def read_marker(out: Path) -> dict | None:
    """The marker's content; None if there is none (or it is not ours: not JSON)."""
    try:
        mark = json.loads((Path(out) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return mark if isinstance(mark, dict) else None


def mark(out: Path, layout: Layout, entries: Iterable[str] | None = None) -> None:
    """Write the marker (atomically): `out` was written by `layout.command`."""
    data = {"command": layout.command, "version": __version__}
    if entries is not None:
        data["entries"] = sorted(set(entries) - OURS)
    tmp = Path(out) / f"{MARKER}.tmp"
    tmp.write_text(json.dumps(data) + "\n")
    os.replace(tmp, Path(out) / MARKER)


def clear(out: Path) -> None:
    """Remove everything in `out` but the marker and the lock (links are removed, not followed)."""
    for child in Path(out).iterdir():
        if child.name in OURS:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def prepare(out: Path, layout: Layout, *, overwrite: bool, resume: bool = False) -> Path:
    """Create `out` (after `guard`); with --overwrite and not --resume empty it first; mark it."""
    out = Path(out)
    if overwrite and not resume and out.is_dir():
        clear(out)
    out.mkdir(parents=True, exist_ok=True)
    mark(out, layout)
    return out


__all__ = ["DEMO", "EXPORT", "MARKER", "TRAIN", "Layout", "check", "clear", "guard", "mark",
           "prepare", "read_marker", "release"]
