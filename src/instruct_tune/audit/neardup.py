"""Near-duplicate search: MinHash signatures, LSH banding, exact Jaccard verification.

Hashing is numpy-vectorised over all shingles at once (datasketch's per-row `MinHash.bulk` takes
~2 s for 52k short instructions and ~15 s for full rows; this takes ~0.3 s). Banding is done here
too, by sorting band keys, because inserting 52k rows into datasketch's `MinHashLSH` with 32
bands took 5 s. The LSH parameters are chosen for recall at the threshold, not datasketch's
default trade-off: for J >= 0.8 with 128 permutations it picks 9 bands x 13 rows, which finds a
pair at exactly J = 0.8 only 40% of the time. 32 bands x 4 rows find it with probability
1 - (1 - 0.8^4)^32 > 0.9999999; the extra candidates this lets through are discarded by a cheap
signature estimate and then an exact Jaccard check, so every reported pair is a true one.
"""

from __future__ import annotations

import numpy as np

NUM_PERM = 128
BANDS, BAND_ROWS = 32, 4
MAX_PARTNERS = 64  # per row per band: bounds the work on huge buckets (templated near-copies)
_MUL = np.uint64(0x9E3779B97F4A7C15)


class Shingles:
    """Shingle hashes of n rows (`hashes[k]` belongs to row `rows[k]`, rows ascending)."""

    def __init__(self, hashes: np.ndarray, rows: np.ndarray, n: int, seed: int = 0):
        self.hashes, self.rows, self.n = hashes, rows, n
        bounds = np.searchsorted(rows, np.arange(n + 1))
        self._lo, self._hi = bounds[:-1], bounds[1:]
        self.present = self._hi > self._lo
        self._sets: dict[int, frozenset] = {}
        self.sig = self._signatures(seed)

    def set(self, i: int) -> frozenset:
        s = self._sets.get(i)
        if s is None:
            s = self._sets[i] = frozenset(self.hashes[self._lo[i]: self._hi[i]].tolist())
        return s

    def jaccard(self, i: int, j: int, other: Shingles | None = None) -> float:
        a, b = self.set(i), (other or self).set(j)
        return len(a & b) / len(a | b) if a or b else 0.0

    def _signatures(self, seed: int) -> np.ndarray:
        """MinHash with multiply-shift hashing: perm_p(h) = top 32 bits of (a_p*h + b_p) mod 2^64."""
        rng = np.random.default_rng(seed)
        a = rng.integers(1, 2**63, size=NUM_PERM, dtype=np.uint64) | np.uint64(1)
        b = rng.integers(0, 2**63, size=NUM_PERM, dtype=np.uint64)
        sig = np.full((self.n, NUM_PERM), 0xFFFFFFFF, dtype=np.uint32)
        if not len(self.hashes):
            return sig
        h = (self.hashes ^ (self.hashes >> np.uint64(32))) & np.uint64(0xFFFFFFFF)
        live = np.nonzero(self.present)[0]
        starts = self._lo[live]
        with np.errstate(over="ignore"):
            for p in range(NUM_PERM):
                v = ((a[p] * h + b[p]) >> np.uint64(32)).astype(np.uint32)
                sig[live, p] = np.minimum.reduceat(v, starts)
        return sig


def _band_keys(sig: np.ndarray, band: int) -> np.ndarray:
    cols = sig[:, band * BAND_ROWS: (band + 1) * BAND_ROWS].astype(np.uint64)
    key = np.zeros(len(sig), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for c in range(cols.shape[1]):
            key = key * _MUL + cols[:, c]
    return key


def _unique_pairs(chunks: list[np.ndarray], n_b: int) -> np.ndarray:
    if not chunks:
        return np.zeros((0, 2), dtype=np.int64)
    code = np.unique(np.concatenate(chunks))
    return np.stack([code // n_b, code % n_b], axis=1)


def self_pairs(sh: Shingles) -> np.ndarray:
    """Candidate pairs (i < j) of rows that share at least one LSH band."""
    live = np.nonzero(sh.present)[0]
    chunks = []
    for band in range(BANDS):
        keys = _band_keys(sh.sig[live], band)
        order = np.argsort(keys, kind="stable")
        k = keys[order]
        # For each sorted position, its bucket's end; pair it with up to MAX_PARTNERS followers.
        change = np.nonzero(np.diff(k))[0] + 1
        bucket_end = np.append(change, len(k))[np.searchsorted(change, np.arange(len(k)),
                                                               side="right")]
        counts = np.minimum(bucket_end - np.arange(len(k)) - 1, MAX_PARTNERS)
        if not counts.sum():
            continue
        first = np.repeat(np.arange(len(k)), counts)
        step = np.arange(len(first)) - np.repeat(np.cumsum(counts) - counts, counts) + 1
        i, j = live[order[first]], live[order[first + step]]
        lo, hi = np.minimum(i, j), np.maximum(i, j)
        chunks.append(lo * sh.n + hi)
    return _unique_pairs(chunks, sh.n)


def cross_pairs(a: Shingles, b: Shingles, max_per_row: int = 1000) -> np.ndarray:
    """Candidate pairs (row of a, row of b) sharing at least one LSH band."""
    live_a, live_b = np.nonzero(a.present)[0], np.nonzero(b.present)[0]
    chunks = []
    for band in range(BANDS):
        kb = _band_keys(b.sig[live_b], band)
        order = np.argsort(kb, kind="stable")
        kb = kb[order]
        ka = _band_keys(a.sig[live_a], band)
        lo, hi = np.searchsorted(kb, ka, "left"), np.searchsorted(kb, ka, "right")
        counts = np.minimum(hi - lo, max_per_row)
        if not counts.sum():
            continue
        ia = np.repeat(np.arange(len(ka)), counts)
        off = np.arange(len(ia)) - np.repeat(np.cumsum(counts) - counts, counts)
        jb = order[np.repeat(lo, counts) + off]
        chunks.append(live_a[ia] * b.n + live_b[jb])
    return _unique_pairs(chunks, b.n)


def estimate(sig_a: np.ndarray, sig_b: np.ndarray, pairs: np.ndarray,
             chunk: int = 200_000) -> np.ndarray:
    """MinHash estimate of Jaccard for each pair (share of equal signature slots)."""
    out = np.empty(len(pairs), dtype=np.float32)
    for s in range(0, len(pairs), chunk):
        p = pairs[s: s + chunk]
        out[s: s + chunk] = (sig_a[p[:, 0]] == sig_b[p[:, 1]]).mean(axis=1)
    return out


def similar_pairs(a: Shingles, threshold: float, b: Shingles | None = None,
                  exact: bool = True) -> list[tuple[int, int, float]]:
    """Pairs with Jaccard >= threshold: within `a`, or between `a` and `b` when given.

    Candidates come from LSH; a signature estimate 0.2 below the threshold (over five standard
    deviations at 128 permutations) drops the obvious misses; survivors are checked exactly when
    `exact`, so no reported pair is a MinHash false positive.
    """
    pairs = self_pairs(a) if b is None else cross_pairs(a, b)
    if not len(pairs):
        return []
    est = estimate(a.sig, (b or a).sig, pairs)
    mask = est >= threshold - (0.2 if exact else 0.0)
    keep, kest = pairs[mask], est[mask]
    if not exact:
        return [(i, j, e) for (i, j), e in zip(keep.tolist(), kest.tolist(), strict=True)]
    out = []
    for i, j in keep.tolist():
        jac = a.jaccard(i, j, b)
        if jac >= threshold:
            out.append((i, j, jac))
    return out


def groups(n: int, pairs) -> list[list[int]]:
    """Connected components (size >= 2) of the pair graph, each sorted, largest first."""
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j, *_ in pairs:
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    comps: dict[int, list[int]] = {}
    for x in {v for p in pairs for v in p[:2]}:
        comps.setdefault(find(x), []).append(x)
    return sorted((sorted(c) for c in comps.values()), key=lambda c: (-len(c), c[0]))


def star_clusters(n: int, pairs) -> list[list[int]]:
    """Greedy star clustering: rows in order of neighbour count become centres and take their
    unassigned neighbours. Unlike connected components, similarity does not chain, so every member is similar to its
    centre (the first element)."""
    nbrs: dict[int, list[int]] = {}
    for i, j, *_ in pairs:
        nbrs.setdefault(i, []).append(j)
        nbrs.setdefault(j, []).append(i)
    assigned: set[int] = set()
    out = []
    for c in sorted(nbrs, key=lambda x: (-len(nbrs[x]), x)):
        if c in assigned:
            continue
        members = [c] + sorted(m for m in nbrs[c] if m not in assigned)
        if len(members) >= 2:
            assigned.update(members)
            out.append(members)
    return sorted(out, key=lambda c: (-len(c), c[0]))
