"""Tokenization cache: a hit returns exactly what a fresh run builds; anything that could change the
result (data, source lines, tokenizer, template, max_length, truncation) is a miss."""

from __future__ import annotations

import copy
import os

from instruct_tune.data import cache
from instruct_tune.data.records import Message, Record, Source
from instruct_tune.data.templates import get_template
from instruct_tune.data.tokenize import build_examples
from tests.conftest import get_tokenizer


def records(n: int = 30, suffix: str = "") -> list[Record]:
    out = [Record.alpaca(f"Instruction number {i}{suffix}", f"Answer {i} is here", source=Source("d.jsonl", i + 1),
                         input="some input" if i % 3 == 0 else "")
           for i in range(n)]
    out.append(Record((Message("system", "sys"), Message("user", "a"), Message("assistant", "b"),
                       Message("user", "c"), Message("assistant", "d")), Source("chat.jsonl", 1)))
    out.append(Record.alpaca("long " * 200, "x", source=Source("d.jsonl", 99)))  # dropped at 64
    return out


def build(recs, tok, cache_dir, template="alpaca", max_length=64, truncation="drop"):
    return build_examples(recs, tok, get_template(template, tok), max_length=max_length,
                          truncation=truncation, cache_dir=str(cache_dir))


def same(a, b) -> bool:
    return ([(e.input_ids, e.labels, e.source) for e in a.examples] ==
            [(e.input_ids, e.labels, e.source) for e in b.examples] and a.dropped == b.dropped)


def test_hit_returns_identical_examples(tmp_path):
    tok = get_tokenizer("llama")
    recs = records()
    first = build(recs, tok, tmp_path)
    second = build(recs, tok, tmp_path)
    assert not first.cached and second.cached
    assert same(first, second)
    assert first.dropped and first.dropped[0].line == 99
    assert len(list(tmp_path.glob("*.npz"))) == 1
    assert not list(tmp_path.glob("*.tmp"))  # written atomically, nothing left behind


def test_everything_in_the_key_invalidates(tmp_path):
    tok = get_tokenizer("llama")
    recs = records()
    build(recs, tok, tmp_path)
    moved = [Record(r.messages, Source(r.source.path, r.source.line + 1)) for r in recs]
    other_tok = copy.deepcopy(tok)
    other_tok.add_special_tokens({"additional_special_tokens": ["<|new|>"]})
    variants = [
        build(records(suffix="!"), tok, tmp_path),  # data content
        build(moved, tok, tmp_path),  # source lines (reported in errors)
        build(recs, get_tokenizer("gpt2"), tmp_path),  # tokenizer
        build(recs, other_tok, tmp_path),  # same tokenizer with one more special token
        build(recs, tok, tmp_path, template="raw"),  # template
        build(recs, tok, tmp_path, max_length=65),  # max_length
        build(recs, tok, tmp_path, truncation="left"),  # truncation
    ]
    assert not any(v.cached for v in variants)
    assert len(list(tmp_path.glob("*.npz"))) == 1 + len(variants)


def test_none_disables_and_corrupt_entry_is_rebuilt(tmp_path, monkeypatch):
    tok = get_tokenizer("gpt2")
    recs = records(5)
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path / "default"))
    assert not build_examples(recs, tok, "alpaca", cache_dir="none").cached
    assert not (tmp_path / "default").exists()
    build_examples(recs, tok, "alpaca")  # None -> the default dir ($INSTRUCT_TUNE_CACHE here)
    entry = next((tmp_path / "default").glob("*.npz"))
    assert build_examples(recs, tok, "alpaca").cached
    entry.write_bytes(b"not a zip")
    rebuilt = build_examples(recs, tok, "alpaca")
    assert not rebuilt.cached and len(rebuilt.examples) == len(recs)
    assert build_examples(recs, tok, "alpaca").cached


def test_unwritable_cache_dir_is_skipped(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = build_examples(records(3), get_tokenizer("gpt2"), "alpaca", cache_dir=str(blocker / "sub"))
    assert len(result.examples) == 5 and not result.cached  # 3 alpaca, 1 chat, 1 long (fits 2048)


def test_least_recently_used_entries_are_evicted_over_the_limit(tmp_path, monkeypatch):
    tok = get_tokenizer("llama")
    sets = [records(12, suffix=f" v{i}") for i in range(4)]
    build(sets[0], tok, tmp_path)
    entry = next(tmp_path.glob("*.npz")).stat().st_size
    monkeypatch.setenv(cache.MAX_MB_ENV_VAR, str(2.5 * entry / 2**20))  # room for two entries
    ages = iter(range(1, 100))

    def step(recs):  # distinct mtimes even on a coarse-grained file system
        result = build(recs, tok, tmp_path)
        for p in tmp_path.glob("*.npz"):
            if p.stat().st_mtime_ns > 10**9 * 100:  # touched just now: give it the next age
                os.utime(p, ns=(next(ages) * 10**9,) * 2)
        return result

    for p in tmp_path.glob("*.npz"):
        os.utime(p, ns=(next(ages) * 10**9,) * 2)
    step(sets[1])                       # cache: 0, 1
    assert step(sets[0]).cached         # a hit marks set 0 as recently used
    step(sets[2])                       # over the limit: set 1 (least recently used) goes
    assert len(list(tmp_path.glob("*.npz"))) == 2
    assert build(sets[0], tok, tmp_path).cached and build(sets[2], tok, tmp_path).cached
    assert not build(sets[1], tok, tmp_path).cached


def test_an_entry_larger_than_the_limit_is_still_kept(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.MAX_MB_ENV_VAR, "0")
    tok = get_tokenizer("llama")
    build(records(), tok, tmp_path)
    assert build(records(), tok, tmp_path).cached  # the run just made it; the next one reuses it


def test_edited_tokenizing_code_does_not_read_old_entries(tmp_path, monkeypatch):
    tok = get_tokenizer("llama")
    assert not build(records(), tok, tmp_path).cached
    assert build(records(), tok, tmp_path).cached
    monkeypatch.setattr(cache, "code_digest", lambda: "edited encode.py")
    assert not build(records(), tok, tmp_path).cached
