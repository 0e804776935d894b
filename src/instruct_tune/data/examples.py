"""Tokenized examples, stored as flat arrays: what tokenizing builds and what the cache holds.

An `ExampleSet` keeps every kept row's ids and labels in two flat int32 arrays with row offsets
(plus each row's source), so a cached set loads without any per-row Python work and summaries
(lengths, trained tokens) are computed with numpy. `ExampleSet.examples` is still a sequence of
`Example`s for training and display: each one is built when it is read.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain

import numpy as np

from ..errors import Problem
from .encode import IGNORE, trained_count
from .records import Source

_ITER_ROWS = 4096  # rows built per step when iterating (bounded memory)


@contextlib.contextmanager
def gc_paused():
    """Building millions of small acyclic lists makes CPython's cyclic GC rescan them over and
    over; pausing it roughly halves the Python-side time."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@dataclass(slots=True)
class Example:
    input_ids: list[int]
    labels: list[int]
    source: Source

    @property
    def num_trained(self) -> int:
        return trained_count(self.labels)

    def __len__(self) -> int:
        return len(self.input_ids)


class ExampleArrays(Sequence[Example]):
    """Rows as flat arrays: row i is ids[offsets[i]:offsets[i + 1]], from paths[src[i]] line
    lines[i]; its labels are its ids except inside the masked (IGNORE) runs [mask_starts[k],
    mask_ends[k]) (positions in the flat array; no run spans two rows). Indexing builds an
    Example (lists of Python ints)."""

    def __init__(self, ids: np.ndarray, offsets: np.ndarray, mask_starts: np.ndarray,
                 mask_ends: np.ndarray, src: np.ndarray, lines: np.ndarray, paths: list[str]):
        self.ids, self.offsets = ids, offsets
        self.mask_starts, self.mask_ends = mask_starts, mask_ends
        self.src, self.lines, self.paths = src, lines, paths

    @classmethod
    def from_rows(cls, ids: Sequence[Sequence[int]], labels: Sequence[Sequence[int]],
                  sources: Sequence[Source]) -> ExampleArrays:
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        offsets = np.zeros(len(ids) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        total = int(offsets[-1])
        flat_ids = np.fromiter(chain.from_iterable(ids), dtype=np.int32, count=total)
        masked = np.fromiter(chain.from_iterable(labels), dtype=np.int32, count=total) == IGNORE
        # Runs of masked positions, broken at row boundaries (a row may start or end masked).
        row_start, row_end = np.zeros(total, dtype=bool), np.zeros(total, dtype=bool)
        row_start[offsets[:-1][lengths > 0]] = True
        row_end[offsets[1:][lengths > 0] - 1] = True
        prev = np.concatenate([[False], masked[:-1]])
        after = np.concatenate([masked[1:], [False]])
        starts = np.flatnonzero(masked & (~prev | row_start))
        ends = np.flatnonzero(masked & (~after | row_end)) + 1
        paths: dict[str, int] = {}
        src = np.fromiter((paths.setdefault(s.path, len(paths)) for s in sources), dtype=np.int32,
                          count=len(sources))
        lines = np.fromiter((s.line for s in sources), dtype=np.int64, count=len(sources))
        return cls(flat_ids, offsets, starts, ends, src, lines, list(paths))

    @classmethod
    def from_examples(cls, examples: Sequence[Example]) -> ExampleArrays:
        return cls.from_rows([e.input_ids for e in examples], [e.labels for e in examples],
                             [e.source for e in examples])

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def _one(self, i: int) -> Example:
        return self._span(i, i + 1)[0]

    def _span(self, a: int, b: int) -> list[Example]:
        """Rows a..b-1, built from one pass over their part of the arrays."""
        lo, hi = int(self.offsets[a]), int(self.offsets[b])
        ids = self.ids[lo:hi]
        first, last = np.searchsorted(self.mask_starts, [lo, hi])
        edges = np.zeros(hi - lo + 1, dtype=np.int32)  # +1 where a masked run starts, -1 after
        edges[self.mask_starts[first:last] - lo] += 1
        edges[self.mask_ends[first:last] - lo] -= 1
        labels = np.where(np.cumsum(edges[:-1], dtype=np.int32) > 0, np.int32(IGNORE), ids)
        cuts = (self.offsets[a:b + 1] - lo).tolist()
        paths = self.paths
        with gc_paused():  # else each new list makes the GC rescan all the earlier ones
            flat_ids, flat_labels = ids.tolist(), labels.tolist()
            return [Example(flat_ids[s:e], flat_labels[s:e], Source(paths[p], line))
                    for s, e, p, line in zip(cuts[:-1], cuts[1:], self.src[a:b].tolist(),
                                             self.lines[a:b].tolist(), strict=True)]

    def __getitem__(self, i):
        if isinstance(i, slice):
            start, stop, step = i.indices(len(self))
            if step == 1:
                return self._span(start, max(start, stop))
            return [self._one(k) for k in range(start, stop, step)]
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"example index {i} out of range ({n} examples)")
        return self._one(i % n)

    def __iter__(self) -> Iterator[Example]:
        for a in range(0, len(self), _ITER_ROWS):
            yield from self._span(a, min(a + _ITER_ROWS, len(self)))

    def __eq__(self, other) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        return len(other) == len(self) and list(self) == list(other)

    __hash__ = None  # mutable arrays: like a list

    @property
    def lengths(self) -> np.ndarray:
        """Tokens per row."""
        return np.diff(self.offsets)

    def _runs(self) -> tuple[np.ndarray, np.ndarray]:
        """(row of each masked run, whether each row's first position is masked)."""
        row = np.searchsorted(self.offsets, self.mask_starts, side="right") - 1
        first_masked = np.zeros(len(self), dtype=bool)
        first_masked[row[self.mask_starts == self.offsets[row]]] = True
        return row, first_masked

    @property
    def trained(self) -> np.ndarray:
        """Trained targets per row: `trained_count` of each row, vectorised (labels that are not
        IGNORE, except a row's first position, which is never a target)."""
        row, first_masked = self._runs()
        masked = np.bincount(row, weights=self.mask_ends - self.mask_starts, minlength=len(self))
        lengths = self.lengths
        return lengths - masked.astype(np.int64) - ((~first_masked) & (lengths > 0))

    def first_trained(self, rows: np.ndarray) -> np.ndarray:
        """For the given rows, the position of their first trained label (0 when none is)."""
        lo, hi = self.offsets[rows], self.offsets[rows + 1]
        k = np.searchsorted(self.mask_starts, lo)
        k_ok = np.minimum(k, max(len(self.mask_starts) - 1, 0))
        starts_at_lo = (k < len(self.mask_starts)) & (self.mask_starts[k_ok] == lo) \
            if len(self.mask_starts) else np.zeros(len(rows), dtype=bool)
        end = self.mask_ends[k_ok] if len(self.mask_ends) else lo
        return np.where(starts_at_lo & (end < hi), end - lo, 0)


@dataclass
class ExampleSet:
    """The kept rows (as ExampleArrays: pass a list of Examples and it is converted), the rows
    dropped with why, and whether it came from the cache."""

    examples: ExampleArrays
    dropped: list[Problem] = field(default_factory=list)
    cached: bool = False  # loaded from the tokenization cache

    def __post_init__(self) -> None:
        if not isinstance(self.examples, ExampleArrays):
            self.examples = ExampleArrays.from_examples(list(self.examples))

    def __len__(self) -> int:
        return len(self.examples)

    def __iter__(self) -> Iterator[Example]:
        return iter(self.examples)

    def __getitem__(self, i):
        return self.examples[i]

    @property
    def lengths(self) -> np.ndarray:
        return self.examples.lengths

    @property
    def trained(self) -> np.ndarray:
        return self.examples.trained
