"""On-disk cache of tokenized examples, keyed by everything that can change the result.

Key = sha256 of (code version and a hash of the tokenizing code's files, record content and sources, tokenizer (its JSON or vocab, special
tokens, class, a probe encoding), the serialised template, max_length, truncation). A cache entry
is one uncompressed .npz: flat int32 ids, offsets and the masked (-100) runs, which become the
ExampleSet's arrays without per-row work (~0.1 s for 55k rows of 400 tokens). Writes go to a
temporary file that is renamed into place, so a crash or two concurrent runs never leave a
half-written entry behind. The directory is kept under a size
limit (2 GiB, or INSTRUCT_TUNE_CACHE_MAX_MB) by deleting the least recently used entries after
each write; a hit marks its entry as used.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np

from ..errors import Problem
from .records import Record

CACHE_VERSION = "4"  # bump whenever tokenize.py would produce different ids or labels, or the format changes
ENV_VAR = "INSTRUCT_TUNE_CACHE"
CODE_FILES = ("tokenize.py", "encode.py", "templates.py", "chat_template.py", "cache.py",
              "examples.py", "long_rows.py")
MAX_MB_ENV_VAR = "INSTRUCT_TUNE_CACHE_MAX_MB"
DEFAULT_MAX_MB = 2048  # ~40 data sets of 52k Alpaca rows


def default_dir() -> Path:
    return Path(os.environ.get(ENV_VAR) or Path.home() / ".cache" / "instruct-tune" / "tokenized")


def open_cache(cache_dir: str | os.PathLike | None) -> TokenCache | None:
    """None: the default directory; "none": caching off."""
    if cache_dir is not None and str(cache_dir).strip().lower() == "none":
        return None
    return TokenCache(Path(cache_dir) if cache_dir is not None else default_dir())


@functools.cache
def code_digest() -> str:
    """Hash of the code that turns records into ids and labels: an edited tokenizer path never
    reads entries an older version wrote, even if CACHE_VERSION was not bumped."""
    here = Path(__file__).parent
    h = hashlib.sha256()
    for name in CODE_FILES:
        h.update((here / name).read_bytes())
    return h.hexdigest()


def records_digest(records: list[Record]) -> str:
    """Content hash of the records and their sources (fast: one join, lengths keep it unambiguous)."""
    parts: list[str] = []
    for r in records:
        parts += (r.source.path, str(r.source.line), str(len(r.messages)))
        for m in r.messages:
            parts += (m.role, m.content, m.input)
    h = hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogatepass"))
    h.update(np.fromiter(map(len, parts), dtype=np.int64, count=len(parts)).tobytes())
    return h.hexdigest()


def tokenizer_digest(tokenizer) -> str:
    h = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        h.update(backend.to_str().encode())
    else:
        h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    h.update(json.dumps(sorted(tokenizer.get_added_vocab().items())).encode())
    specials = {k: str(getattr(tokenizer, k, None)) for k in
                ("bos_token", "eos_token", "pad_token", "unk_token")}
    h.update(json.dumps(specials, sort_keys=True).encode())
    # Python-side behaviour (e.g. an add_bos flag) shows up in what the tokenizer actually returns.
    h.update(json.dumps(tokenizer("Probe, text: 1 2\n")["input_ids"]).encode())
    return h.hexdigest()


def max_bytes() -> int:
    try:
        return int(float(os.environ.get(MAX_MB_ENV_VAR) or DEFAULT_MAX_MB) * 2**20)
    except ValueError:
        return DEFAULT_MAX_MB * 2**20


class TokenCache:
    def __init__(self, directory: Path, limit: int | None = None):
        self.dir = Path(directory).expanduser()
        self.limit = max_bytes() if limit is None else limit

    def key(self, records, tokenizer, template, max_length: int, truncation: str) -> str:
        parts = [CACHE_VERSION, code_digest(), records_digest(records), tokenizer_digest(tokenizer),
                 json.dumps(template.to_dict(), sort_keys=True, ensure_ascii=False),
                 str(max_length), truncation]
        return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:32]

    def path(self, key: str) -> Path:
        return self.dir / f"{key}.npz"

    def load(self, key: str):
        """The cached ExampleSet, or None on a miss (or an unreadable entry, which is rebuilt).
        No per-row work: the arrays are the ExampleSet's own storage."""
        from .examples import ExampleArrays, ExampleSet

        path = self.path(key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                if meta.get("version") != CACHE_VERSION:
                    return None
                ids, offsets, src, lines = z["ids"], z["offsets"], z["src"], z["lines"]
                starts, ends = z["mask_starts"], z["mask_ends"]
        except (OSError, KeyError, ValueError, json.JSONDecodeError):
            return None
        if not (len(offsets) == len(src) + 1 == len(lines) + 1 and offsets[-1] == len(ids)
                and len(starts) == len(ends)):
            return None  # a damaged entry: rebuilt
        with contextlib.suppress(OSError):
            os.utime(path)  # recently used: eviction goes by modification time
        rows = ExampleArrays(ids, offsets, starts, ends, src, lines, meta["paths"])
        return ExampleSet(rows, [Problem(**p) for p in meta["dropped"]], cached=True)

    def save(self, key: str, result) -> Path | None:
        """Write atomically; a cache that can't be written (read-only disk) is only skipped."""
        rows = result.examples
        meta = {"version": CACHE_VERSION, "paths": rows.paths,
                "dropped": [p.__dict__ for p in result.dropped]}
        buf = io.BytesIO()
        np.savez(buf, ids=rows.ids.astype(np.int32), mask_starts=rows.mask_starts.astype(np.int64),
                 mask_ends=rows.mask_ends.astype(np.int64), offsets=rows.offsets.astype(np.int64),
                 src=rows.src.astype(np.int32), lines=rows.lines.astype(np.int64),
                 meta=np.asarray(json.dumps(meta, ensure_ascii=False)))
        path = self.path(key)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(buf.getvalue())
            os.replace(tmp, path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            return None
        self.evict(keep=path)
        return path

    def evict(self, keep: Path) -> list[Path]:
        """Delete the least recently used entries until the directory fits the size limit (never
        `keep`, the entry just written). Returns what was deleted."""
        entries = []
        for p in self.dir.glob("*.npz"):
            with contextlib.suppress(OSError):  # another run may delete it meanwhile
                st = p.stat()
                entries.append((st.st_mtime_ns, st.st_size, p))
        total, deleted = sum(size for _, size, _ in entries), []
        for _, size, p in sorted(entries, key=lambda e: e[0]):
            if total <= self.limit:
                break
            if p != keep:
                with contextlib.suppress(OSError):
                    p.unlink()
                    deleted.append(p)
                total -= size
        return deleted
