"""MinHash LSH search: recall at the Jaccard threshold, no false positives, bounded on templates."""

from __future__ import annotations

import random

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from rapidfuzz.distance import Indel

from instruct_tune.audit.neardup import (
    Shingles,
    best_matches,
    leader_clusters,
    near_duplicate_groups,
)
from instruct_tune.audit.words import lcs_strings


def shingles(sets: list[list[int]], seed: int = 0) -> Shingles:
    rows = np.repeat(np.arange(len(sets)), [len(s) for s in sets])
    hashes = np.array([h for s in sets for h in s], dtype=np.uint64)
    return Shingles(hashes, rows, len(sets), seed=seed)


def jaccard(a, b) -> float:
    a, b = set(a), set(b)
    return len(a & b) / len(a | b)


def boundary_pairs(rng: random.Random, n_pairs: int) -> list[list[int]]:
    """Pairs at Jaccard 0.80-0.86 (the hardest ones for LSH), then unrelated sets."""
    sets = []
    for _ in range(n_pairs):
        size = rng.randint(15, 60)
        a = rng.sample(range(10**9), size)
        # Replacing k of n elements gives J = (n - k) / (n + k); pick the largest k keeping J >= 0.8.
        k = max(1, int(size / 9))
        b = a[:-k] + rng.sample(range(10**9, 2 * 10**9), k)
        assert jaccard(a, b) >= 0.8
        sets += [a, b]
    return sets + [rng.sample(range(10**9), rng.randint(5, 60)) for _ in range(500)]


def test_recall_at_threshold_and_no_false_pairs():
    rng = random.Random(0)
    sets = boundary_pairs(rng, 300)
    sh = shingles(sets)
    groups, pairs = near_duplicate_groups(sh, 0.8)
    together = {frozenset(g) for g in groups}
    for i in range(0, 600, 2):
        assert frozenset((i, i + 1)) in together, f"missed pair {i}, J={jaccard(sets[i], sets[i + 1])}"
    for i, j, jac in pairs:  # every linking pair is verified exactly
        assert jac == jaccard(sets[i], sets[j]) >= 0.8
    assert all(len(g) == 2 for g in groups)


def test_best_matches_across_sets():
    rng = random.Random(1)
    index = [rng.sample(range(10**9), rng.randint(10, 40)) for _ in range(2000)]
    queries, expect = [], {}
    for q in range(100):
        if q % 2:
            t = rng.randrange(len(index))
            queries.append(index[t][:-1] + [7])  # one element swapped
            if jaccard(queries[-1], index[t]) >= 0.8:
                expect[q] = t
        else:
            queries.append(rng.sample(range(10**9), 20))
    found = best_matches(shingles(queries, 3), shingles(index, 3), 0.8)
    assert {q: t for q, (t, _) in found.items()} == expect


def test_templated_data_stays_linear_and_grouped():
    """3,000 rows one element apart: the bucket cap bounds the work, and they still form one group."""
    base = list(range(40))
    sets = [base[:-1] + [1000 + i] for i in range(3000)]
    groups, pairs = near_duplicate_groups(shingles(sets), 0.8)
    assert len(groups) == 1 and len(groups[0]) == 3000
    assert len(pairs) == 2999  # union-find: one verified link per joined row


def test_leader_clusters_do_not_chain():
    """A chain a0 ~ a1 ~ a2 ... where far ends share nothing must not become one cluster."""
    chain = [list(range(i * 4, i * 4 + 12)) for i in range(30)]  # neighbours overlap by 8/16
    sh = shingles(chain, 1)
    clusters = leader_clusters(sh, 0.5, [1] * len(chain))
    for c in clusters:
        leader = c[0]
        for m in c[1:]:
            assert jaccard(chain[leader], chain[m]) >= 0.3  # estimate >= 0.5, true J far from 0
    assert max(len(c) for c in clusters) < 5


def _lcs(a: list[str], b: list[str]) -> int:
    dp = [0] * (len(b) + 1)
    for x in a:
        prev = 0
        for j, y in enumerate(b, 1):
            prev, dp[j] = dp[j], prev + 1 if x == y else max(dp[j], dp[j - 1])
    return dp[-1]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(str.split("a b c d e f g the of")), max_size=25),
       st.lists(st.sampled_from(str.split("a b c d e f g the of")), max_size=25))
def test_indel_on_word_strings_is_rouge_l_f1(a, b):
    sa, sb = lcs_strings([a, b])
    ref = 2 * _lcs(a, b) / (len(a) + len(b)) if a or b else 1.0
    assert abs(Indel.normalized_similarity(sa, sb) - ref) < 1e-9
