"""On-disk cache of tokenized examples, keyed by everything that can change the result.

Key = sha256 of (code version, record content and sources, tokenizer (its JSON or vocab, special
tokens, class, a probe encoding), the serialised template, max_length, truncation). A cache entry
is one uncompressed .npz: flat int32 ids and labels plus offsets, which loads in well under a
second for 52k rows. Writes go to a temporary file that is renamed into place, so a crash or two
concurrent runs never leave a half-written entry behind.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np

from ..errors import Problem
from .records import Record, Source

CACHE_VERSION = "1"  # bump whenever tokenize.py would produce different ids or labels
ENV_VAR = "INSTRUCT_TUNE_CACHE"


def default_dir() -> Path:
    return Path(os.environ.get(ENV_VAR) or Path.home() / ".cache" / "instruct-tune" / "tokenized")


def open_cache(cache_dir: str | os.PathLike | None) -> TokenCache | None:
    """None: the default directory; "none": caching off."""
    if cache_dir is not None and str(cache_dir).strip().lower() == "none":
        return None
    return TokenCache(Path(cache_dir) if cache_dir is not None else default_dir())


def records_digest(records: list[Record]) -> str:
    rows = [(r.source.path, r.source.line, [(m.role, m.content, m.input) for m in r.messages])
            for r in records]
    blob = json.dumps(rows, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()


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


class TokenCache:
    def __init__(self, directory: Path):
        self.dir = Path(directory).expanduser()

    def key(self, records, tokenizer, template, max_length: int, truncation: str) -> str:
        parts = [CACHE_VERSION, records_digest(records), tokenizer_digest(tokenizer),
                 json.dumps(template.to_dict(), sort_keys=True, ensure_ascii=False),
                 str(max_length), truncation]
        return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:32]

    def path(self, key: str) -> Path:
        return self.dir / f"{key}.npz"

    def load(self, key: str):
        """The cached ExampleSet, or None on a miss (or an unreadable entry, which is rebuilt)."""
        from .tokenize import Example, ExampleSet

        path = self.path(key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                ids, labels, offsets = z["ids"].tolist(), z["labels"].tolist(), z["offsets"].tolist()
                src, lines = z["src"].tolist(), z["lines"].tolist()
                meta = json.loads(str(z["meta"]))
        except (OSError, KeyError, ValueError, json.JSONDecodeError):
            return None
        if meta.get("version") != CACHE_VERSION:
            return None
        paths = meta["paths"]
        sources = {}
        examples = []
        for i in range(len(offsets) - 1):
            lo, hi = offsets[i], offsets[i + 1]
            sk = (src[i], lines[i])
            source = sources.get(sk) or sources.setdefault(sk, Source(paths[src[i]], lines[i]))
            examples.append(Example(ids[lo:hi], labels[lo:hi], source))
        dropped = [Problem(**p) for p in meta["dropped"]]
        return ExampleSet(examples, dropped, cached=True)

    def save(self, key: str, result) -> Path | None:
        """Write atomically; a cache that can't be written (read-only disk) is only skipped."""
        paths: dict[str, int] = {}
        src = [paths.setdefault(e.source.path, len(paths)) for e in result.examples]
        lengths = [len(e.input_ids) for e in result.examples]
        flat_ids = [x for e in result.examples for x in e.input_ids]
        flat_labels = [x for e in result.examples for x in e.labels]
        meta = {"version": CACHE_VERSION, "paths": list(paths),
                "dropped": [p.__dict__ for p in result.dropped]}
        buf = io.BytesIO()
        np.savez(buf, ids=np.asarray(flat_ids, dtype=np.int32),
                 labels=np.asarray(flat_labels, dtype=np.int32),
                 offsets=np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int64),
                 src=np.asarray(src, dtype=np.int32),
                 lines=np.asarray([e.source.line for e in result.examples], dtype=np.int64),
                 meta=np.asarray(json.dumps(meta, ensure_ascii=False)))
        path = self.path(key)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(buf.getvalue())
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)
            return None
        return path
