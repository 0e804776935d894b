"""ExampleArrays (flat storage of tokenized rows) gives back exactly the Examples it was built from,
and its vectorised summaries equal the per-row definitions; the cache round-trips it."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from instruct_tune.data.cache import TokenCache
from instruct_tune.data.encode import IGNORE, trained_count
from instruct_tune.data.examples import Example, ExampleArrays, ExampleSet
from instruct_tune.data.records import Source
from instruct_tune.errors import Problem

# Rows of (id, masked?) pairs: any masking pattern, rows that start or end masked, empty rows.
rows = st.lists(st.lists(st.tuples(st.integers(0, 70_000), st.booleans()), max_size=12), max_size=8)


def examples_of(spec) -> list[Example]:
    return [Example([t for t, _ in row], [IGNORE if m else t for t, m in row],
                    Source(f"f{i % 3}.jsonl", 10 * i + 1)) for i, row in enumerate(spec)]


@settings(max_examples=200, deadline=None)
@given(rows)
def test_rows_come_back_exactly(spec):
    exs = examples_of(spec)
    arr = ExampleArrays.from_examples(exs)
    assert len(arr) == len(exs)
    assert list(arr) == exs
    assert arr[1:5:2] == exs[1:5:2]
    if exs:
        assert arr[-1] == exs[-1]
    assert arr.lengths.tolist() == [len(e.input_ids) for e in exs]
    assert arr.trained.tolist() == [trained_count(e.labels) for e in exs]
    first = [next((i for i, y in enumerate(e.labels) if y != IGNORE), 0) for e in exs]
    assert arr.first_trained(np.arange(len(exs))).tolist() == first


@settings(max_examples=50, deadline=None)
@given(rows)
def test_cache_round_trip(tmp_path_factory, spec):
    exs = examples_of(spec)
    dropped = [Problem("f.jsonl", 3, None, "longer than --max-length 8 (9 tokens)")]
    store = TokenCache(tmp_path_factory.mktemp("cache"))
    store.save("k", ExampleSet(exs, dropped))
    hit = store.load("k")
    assert hit.cached and list(hit.examples) == exs and hit.dropped == dropped
    assert hit.trained.tolist() == [trained_count(e.labels) for e in exs]


def test_index_out_of_range():
    arr = ExampleArrays.from_examples(examples_of([[(1, True), (2, False)]]))
    assert arr[0] == arr[-1]
    for bad in (1, -2):
        try:
            arr[bad]
        except IndexError:
            continue
        raise AssertionError(f"arr[{bad}] did not raise")
