"""Text as words, and words as numbers: the shared representation every lever compares.

Texts are case-folded and split into words (CJK characters count as one word each, since those
scripts don't separate words with spaces). Each distinct word gets a stable 64-bit hash, and a set
of texts becomes one flat numpy array of word hashes plus row offsets, so n-gram hashing and
MinHash over 52,000 rows are a few vectorised passes instead of millions of Python calls.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import numpy as np

_WORD = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]|\w+")
_WORD_OR_SEP = re.compile(r"\0|[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]|\w+")
_SEP_HASH = hash("\0")
_MUL = np.uint64(0x9E3779B97F4A7C15)  # odd constant for polynomial rolling hashes


def norm(text: str) -> str:
    """Case- and whitespace-insensitive form used for 'exact' duplicate checks."""
    return " ".join(text.casefold().split())


def words(text: str) -> list[str]:
    return _WORD.findall(text.casefold())


class Vocab:
    """Stable word -> 64-bit hash (content-based, so results do not depend on row order)."""

    def __init__(self) -> None:
        self._h: dict[str, int] = {}

    def hashes(self, ws: list[str]) -> np.ndarray:
        return np.array(self.ids(ws), dtype=np.uint64)

    def ids(self, ws: list[str]) -> list[int]:
        h = self._h
        try:
            return [h[w] for w in ws]
        except KeyError:
            for w in ws:
                if w not in h:
                    h[w] = int.from_bytes(hashlib.blake2b(w.encode("utf-8", "replace"),
                                                          digest_size=8).digest(), "little")
            return [h[w] for w in ws]


@dataclass
class Tokens:
    """Many texts as one flat array of word hashes; row i is ids[starts[i]:starts[i]+lengths[i]]."""

    ids: np.ndarray  # uint64
    starts: np.ndarray  # int64
    lengths: np.ndarray  # int64

    @classmethod
    def of(cls, texts: list[str], vocab: Vocab | None) -> Tokens:
        """Tokenize texts. Without a vocab, words are hashed with Python's per-process `hash`:
        3x faster on millions of words and fine for exact n-gram matching within one run, but
        not stable across runs, so MinHash (whose LSH buckets should be reproducible) uses a vocab.
        """
        if vocab is None:
            # One regex pass over all texts, with NUL as the row separator.
            toks = _WORD_OR_SEP.findall("\0".join(t.replace("\0", " ") for t in texts).casefold())
            ids = np.fromiter(map(hash, toks), dtype=np.int64, count=len(toks)).view(np.uint64)
            is_sep = ids == np.uint64(_SEP_HASH & 0xFFFFFFFFFFFFFFFF)
            seps = np.nonzero(is_sep)[0]
            bounds = np.concatenate([[-1], seps, [len(toks)]])
            lengths = np.diff(bounds) - 1
            starts = bounds[:-1] + 1 - np.arange(len(lengths))
            return cls(ids[~is_sep], starts.astype(np.int64), lengths.astype(np.int64))
        return cls.from_words([words(t) for t in texts], vocab)

    @classmethod
    def from_words(cls, word_lists: list[list[str]], vocab: Vocab) -> Tokens:
        rows = [vocab.ids(ws) for ws in word_lists]
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        starts = np.zeros(len(rows), dtype=np.int64)
        if len(rows) > 1:
            np.cumsum(lengths[:-1], out=starts[1:])
        flat = np.fromiter((w for r in rows for w in r), dtype=np.uint64, count=int(lengths.sum()))
        return cls(flat, starts, lengths)

    def __len__(self) -> int:
        return len(self.lengths)


def ngram_hashes(tok: Tokens, n: int, whole_if_shorter: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of every word n-gram and the row each belongs to, rows in order.

    A row shorter than n contributes one hash of all its words when `whole_if_shorter` (so short
    texts still have a shingle) and nothing otherwise; empty rows contribute nothing.
    """
    ids, starts, lengths = tok.ids, tok.starts, tok.lengths
    total = len(ids)
    if total == 0:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    # Polynomial hash over each window: h = sum ids[p+k] * MUL^(n-1-k) (mod 2^64).
    with np.errstate(over="ignore"):
        h = np.zeros(max(total - n + 1, 0), dtype=np.uint64)
        for k in range(n):
            h = h * _MUL + ids[k: k + len(h)]
    pos = np.arange(len(h), dtype=np.int64)
    row_of_pos = np.repeat(np.arange(len(tok), dtype=np.int64), lengths)
    ends = starts + lengths
    valid = pos + n <= ends[row_of_pos[: len(h)]]
    hashes, rows = h[valid], row_of_pos[: len(h)][valid]
    if whole_if_shorter:
        short = np.nonzero((lengths > 0) & (lengths < n))[0]
        if len(short):
            extra = np.zeros(len(short), dtype=np.uint64)
            with np.errstate(over="ignore"):
                for k in range(int(lengths[short].max())):
                    has = lengths[short] > k
                    idx = np.where(has, starts[short] + k, 0)
                    extra = np.where(has, extra * _MUL + ids[idx], extra)
            hashes = np.concatenate([hashes, extra ^ np.uint64(n)])  # ^n: differ from true n-grams
            rows = np.concatenate([rows, short])
            order = np.argsort(rows, kind="stable")
            hashes, rows = hashes[order], rows[order]
    return hashes, rows


def lcs_strings(token_lists: list[list[str]]) -> list[str]:
    """Encode word lists as strings with one character per distinct word.

    Character-level LCS on these strings is word-level LCS, so rapidfuzz's Indel similarity,
    2*LCS/(len_a+len_b), is exactly ROUGE-L F1 over words — at rapidfuzz's C++ speed.
    """
    chars: dict[str, str] = {}

    def add(w: str) -> str:
        i = len(chars)
        # Skip the surrogate block, which is not valid in strings handed to C code.
        chars[w] = chr(0x100 + i if i < 0xD700 else 0xE000 + (i - 0xD700) % 0x102000)
        return chars[w]

    return ["".join([chars.get(w) or add(w) for w in ws]) for ws in token_lists]
