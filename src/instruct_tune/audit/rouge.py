"""ROUGE-L neighbours of sampled instructions, exact, without comparing every pair.

`phrasing.py` asks, for each sampled instruction, for its most similar other instruction with
ROUGE-L F1 (over words) >= a threshold. Texts come as strings with one character per distinct word
(words.lcs_strings), so ROUGE-L F1 is rapidfuzz's Indel normalized similarity, 2 LCS / (la + lb).

Comparing 1,000 long prompts with 55,000 others by LCS is minutes of work, and nearly every pair is
far below the threshold. The LCS of two texts is at most the words they share (as a multiset),
which is cheap to bound for all pairs at once: shared common words <= min(common words in each),
and shared other words are counted exactly from an inverted index (their posting lists are short).
Only pairs whose bound reaches the threshold are scored, with the same scorer, cutoff and float32
scores as a full comparison, so the neighbour found is the one a full comparison finds.
"""

from __future__ import annotations

import numpy as np
from rapidfuzz.distance import Indel
from rapidfuzz.process import cdist

COMMON = 64  # the most frequent words are bounded by count instead of looked up
_LOOP_MAX = 64  # candidates scored one by one; more go to rapidfuzz's cdist
_CHUNK = 100  # queries bounded at a time
_DENSE = 0.3  # a chunk keeping this share of all pairs is compared in full instead


def _word_ids(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Flat dense word ids of all texts, and the row offsets."""
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    codes = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32)
    _, ids = np.unique(codes, return_inverse=True)
    return ids.astype(np.int64), offsets


def _index(ids: np.ndarray, offsets: np.ndarray, n: int):
    """Per text: count of common words. Postings of the other words: (doc, count) sorted by word,
    with each word's slice, and per text its distinct other words with their counts."""
    doc = np.repeat(np.arange(n, dtype=np.int64), np.diff(offsets))
    freq = np.bincount(ids)
    common = np.zeros(len(freq), dtype=bool)
    common[np.argsort(-freq, kind="stable")[:COMMON]] = True
    n_common = np.bincount(doc[common[ids]], minlength=n)
    rare = ~common[ids]
    pairs, counts = np.unique(ids[rare] * n + doc[rare], return_counts=True)  # (word, doc) sorted
    words, docs = pairs // n, pairs % n
    word_start = np.searchsorted(words, np.arange(len(freq) + 1))
    by_doc = np.lexsort((words, docs))  # the same pairs, per document
    doc_start = np.searchsorted(docs[by_doc], np.arange(n + 1))
    return n_common, (docs, counts, word_start), (words[by_doc], counts[by_doc], doc_start)


def best_partners(texts: list[str], queries: list[int], threshold: float) -> dict[int, int]:
    """query -> the index of its most similar other text (the first on ties) when that reaches
    `threshold` (Indel normalized similarity, scored as float32 like rapidfuzz's cdist)."""
    n = len(texts)
    if n < 2 or not queries:
        return {}
    ids, offsets = _word_ids(texts)
    lengths = np.diff(offsets)
    n_common, postings, per_doc = _index(ids, offsets, n)
    out: dict[int, int] = {}
    for s in range(0, len(queries), _CHUNK):
        chunk = queries[s:s + _CHUNK]
        cands = [_candidates(q, n_common, postings, per_doc, lengths, threshold) for q in chunk]
        if sum(map(len, cands)) > _DENSE * n * len(chunk):
            # Templated instructions: most pairs share most words, so the bound prunes little and
            # one comparison of the whole chunk with every text is faster (the rest go that way).
            out.update(_full(texts, queries[s:], threshold))
            break
        for q, cand in zip(chunk, cands, strict=True):
            if len(cand) > _LOOP_MAX:
                scores = cdist([texts[q]], [texts[c] for c in cand.tolist()],
                               scorer=Indel.normalized_similarity, score_cutoff=threshold,
                               dtype=np.float32, workers=-1)[0]
            else:
                scores = np.array([Indel.normalized_similarity(texts[q], texts[c],
                                                               score_cutoff=threshold)
                                   for c in cand.tolist()], dtype=np.float32)
            if len(scores) and scores.max() >= threshold:
                out[q] = int(cand[scores.argmax()])  # argmax: the first of equals, as in a full row
    return out


def _candidates(q: int, n_common, postings, per_doc, lengths, threshold: float) -> np.ndarray:
    """The texts (other than q) whose shared-word bound reaches the threshold, ascending."""
    p_docs, p_counts, word_start = postings
    d_words, d_counts, doc_start = per_doc
    shared = np.minimum(n_common, n_common[q]).astype(np.float64)
    lo, hi = doc_start[q], doc_start[q + 1]
    for w, c in zip(d_words[lo:hi].tolist(), d_counts[lo:hi].tolist(), strict=True):
        s, e = word_start[w], word_start[w + 1]
        shared[p_docs[s:e]] += np.minimum(p_counts[s:e], c)
    # LCS <= shared words, so a text whose bound is below the threshold cannot reach it.
    cand = np.flatnonzero(2 * shared >= threshold * (lengths + lengths[q]))
    return cand[cand != q]


def _full(texts: list[str], queries: list[int], threshold: float) -> dict[int, int]:
    """Every query against every text, in blocks (the comparison without the bound)."""
    out: dict[int, int] = {}
    for s in range(0, len(queries), 500):
        q = queries[s:s + 500]
        scores = cdist([texts[i] for i in q], texts, scorer=Indel.normalized_similarity,
                       score_cutoff=threshold, dtype=np.float32, workers=-1)
        scores[np.arange(len(q)), q] = 0  # not similar to itself
        best = scores.argmax(axis=1)
        for r, (qi, b) in enumerate(zip(q, best.tolist(), strict=True)):
            if scores[r, b] >= threshold:
                out[qi] = b
    return out
