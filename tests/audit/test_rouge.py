"""audit/rouge.py finds, for each query, the same ROUGE-L neighbour as comparing it with every text
(rapidfuzz cdist over the whole set, the way phrasing.py did it), whichever path it takes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rapidfuzz.distance import Indel
from rapidfuzz.process import cdist

from instruct_tune.audit import rouge
from instruct_tune.audit.words import lcs_strings

THRESHOLD = 0.7
FRAMES = [["classify", "the", "review"], ["translate", "this", "sentence", "into", "french"], []]
WORDS = ["a", "b", "c", "the", "of", "x1", "x2", "x3", "x4", "x5", "x6", "x7", "x8", "x9"]


def reference(texts: list[str], queries: list[int]) -> dict[int, int]:
    scores = cdist([texts[i] for i in queries], texts, scorer=Indel.normalized_similarity,
                   score_cutoff=THRESHOLD, dtype=np.float32)
    scores[np.arange(len(queries)), queries] = 0
    best = scores.argmax(axis=1)
    return {q: int(b) for r, (q, b) in enumerate(zip(queries, best.tolist(), strict=True))
            if scores[r, b] >= THRESHOLD}


rows = st.lists(st.tuples(st.sampled_from(range(len(FRAMES))),
                          st.lists(st.sampled_from(WORDS), max_size=12)), min_size=2, max_size=40)


@pytest.mark.parametrize("path", ["bounded", "one-by-one", "dense"])
@settings(max_examples=60, deadline=None)
@given(rows=rows, data=st.data())
def test_same_neighbours_as_comparing_all_pairs(path, rows, data):
    texts = lcs_strings([FRAMES[f] + ws for f, ws in rows])
    queries = sorted(data.draw(st.sets(st.integers(0, len(texts) - 1), min_size=1)))
    with pytest.MonkeyPatch.context() as m:
        m.setattr(rouge, "_DENSE", 0.0 if path == "dense" else 2.0)
        m.setattr(rouge, "_LOOP_MAX", 10**9 if path == "one-by-one" else 0)
        assert rouge.best_partners(texts, queries, THRESHOLD) == reference(texts, queries)


def test_the_bound_prunes_unrelated_texts():
    rng = np.random.default_rng(0)
    vocab = [f"w{i}" for i in range(3000)]
    texts = lcs_strings([list(rng.choice(vocab, size=60)) for _ in range(400)])
    n_common, postings, per_doc = rouge._index(*rouge._word_ids(texts), len(texts))
    lengths = np.array([len(t) for t in texts])
    kept = rouge._candidates(0, n_common, postings, per_doc, lengths, THRESHOLD)
    assert len(kept) < 10  # random texts share few words: nearly all are never scored
