"""Rows far longer than --max-length (issue 16): answered from their character count, never by BPE on
a giant word, with exactly the result full tokenization gives (rows kept, ids, labels); with
--truncation left only a tail of the prompt is tokenized, and the kept tokens are still exact."""

from __future__ import annotations

import json
import random
import signal
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from instruct_tune.cli import main
from instruct_tune.data import long_rows, tokenize
from instruct_tune.data.records import Record, Source
from instruct_tune.data.templates import get_template
from instruct_tune.data.tokenize import build_examples
from tests.conftest import STORIES, get_tokenizer

KINDS = ["llama", "gpt2", "chatml"]
PIECES = ["a", "aaaa", "ab", " ", "  ", "\n", "\t", "é", "🙂", "the", " the", "###", "<|im_end|>",
          "</s>", "<s>", "0", "12345", "!", "...", "’", "\u0301", "x" * 40, "e\u0323\u0302",
          "\u1100\u1161\u11a8", "\u03b1\u0313\u0300\u0345"]  # (these three compose to one)


def tokenizers():
    toks = {kind: get_tokenizer(kind) for kind in KINDS}
    if (STORIES / "tokenizer.json").is_file():
        from instruct_tune.models import load_tokenizer

        toks["stories260k"] = load_tokenizer(STORIES)
    return toks


TOKS = tokenizers()


def backends():
    from tokenizers import Tokenizer

    out = {kind: tok.backend_tokenizer for kind, tok in TOKS.items()}
    spec = json.loads(out["llama"].to_str())
    spec["normalizer"] = {"type": "NFC"}  # like Qwen's: composition shortens the text
    out["llama+nfc"] = Tokenizer.from_str(json.dumps(spec))
    return out


BACKENDS = backends()


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(sorted(BACKENDS)), st.lists(st.sampled_from(PIECES), max_size=60))
def test_no_token_stands_for_more_characters_than_the_bound(kind, pieces):
    backend = BACKENDS[kind]
    limit = long_rows.max_token_chars(backend)
    assert limit is not None  # all of these are BPE tokenizers that keep every character
    text = "".join(pieces)
    assert len(backend.encode(text, add_special_tokens=False).ids) * limit >= len(text)


def test_no_bound_when_characters_can_vanish():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    def tok(**parts):
        t = Tokenizer(models.BPE(vocab={"a": 0, "b": 1, "[UNK]": 2}, merges=[],
                                 unk_token="[UNK]", fuse_unk=parts.pop("fuse", False)))
        for name, value in parts.items():
            setattr(t, name, value)
        return t

    assert long_rows.max_token_chars(tok()) == 5  # every unknown character is one [UNK]
    assert long_rows.max_token_chars(tok(fuse=True)) is None  # a run of unknowns is one token
    assert long_rows.max_token_chars(tok(normalizer=normalizers.Strip())) is None
    assert long_rows.max_token_chars(tok(normalizer=normalizers.NFKC())) == 4 * 5  # composes
    assert long_rows.max_token_chars(tok(pre_tokenizer=pre_tokenizers.Whitespace())) is None
    assert long_rows.max_token_chars(Tokenizer(models.WordPiece({"a": 0, "[UNK]": 1},
                                                                unk_token="[UNK]"))) is None


def test_composition_shrinks_text_at_most_fourfold():
    import sys
    import unicodedata

    longest = max(len(unicodedata.normalize("NFD", chr(c))) for c in range(sys.maxunicode + 1)
                  if not 0xD800 <= c < 0xE000)
    assert longest <= long_rows.COMPOSING["NFC"] == long_rows.COMPOSING["NFKC"]


def words(rng: random.Random, n_chars: int) -> str:
    vocab = ["the", "cat", "sat", "on", "a", "mat", "Lily", "story", "42", "é", "!", "\n"]
    out, size = [], 0
    while size < n_chars:
        w = rng.choice(vocab)
        out.append(w)
        size += len(w) + 1
    return " ".join(out)


def record(rng: random.Random, line: int) -> Record:
    kind = rng.choice(["words", "word", "pair"])
    size = rng.choice([rng.randint(20, 600), 1_500, 4_000, 9_000])  # near the bound, and far

    def text(n):
        return words(rng, n) if kind == "words" else ("a" if kind == "word" else "ab") * (n // 2)

    prompt, reply = (text(size), "ok") if rng.random() < 0.6 else ("Say it.", text(size))
    return Record.alpaca(prompt, reply, source=Source("long.jsonl", line))


def built(recs, tok, truncation, bound: bool):
    with pytest.MonkeyPatch.context() as m:
        if not bound:
            m.setattr(tokenize, "_char_limit", lambda enc: None)
        r = build_examples(recs, tok, get_template("alpaca", tok), max_length=24,
                           truncation=truncation, cache_dir="none")
    return ([(e.input_ids, e.labels, e.source) for e in r.examples],
            sorted(p.line for p in r.dropped))


@settings(max_examples=12, deadline=None)
@given(st.sampled_from(sorted(TOKS)), st.sampled_from(["drop", "left"]), st.integers(0, 10**6))
def test_same_result_as_tokenizing_everything(kind, truncation, seed):
    rng = random.Random(seed)
    recs = [record(rng, i + 1) for i in range(8)]
    assert built(recs, TOKS[kind], truncation, True) == built(recs, TOKS[kind], truncation, False)


def test_tails_that_disagree_fall_back_to_the_whole_row(monkeypatch):
    tok = TOKS["gpt2"]
    enc = tokenize.get_encoder(tok, get_template("alpaca", tok))
    rec = Record.alpaca(words(random.Random(1), 5_000), "ok", source=Source("d.jsonl", 7))
    whole = built([rec], tok, "left", False)[0][0]
    ids, labels, why = tokenize._same_tail(([1], [1], None), ([2], [2], None), rec, enc, 24, "left")
    assert why is None and (ids, labels, rec.source) == whole
    monkeypatch.setattr(long_rows, "WHOLE_MAX_CHARS", 1_000)  # too long to tokenize whole: said
    assert "cut exactly" in tokenize._same_tail(([1], [1], None), ([2], [2], None), rec, enc, 24,
                                                "left")[2]


@contextmanager
def deadline(seconds: int):
    def on_alarm(*_):
        raise TimeoutError(f"took more than {seconds}s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


MB3 = 3_000_000


@pytest.fixture
def tokenized_lengths(monkeypatch) -> list[int]:
    """The longest text handed to the tokenizer per call (records what BPE was asked to do)."""
    seen: list[int] = []
    enc = tokenize.get_encoder(TOKS["llama"], get_template("alpaca", TOKS["llama"]))
    original = type(enc).encode_turns

    def spy(self, batch):
        seen.append(max((len(p) + len(r or "") for turns in batch for p, r in turns), default=0))
        return original(self, batch)

    monkeypatch.setattr(type(enc), "encode_turns", spy)
    return seen


@pytest.mark.parametrize("truncation", ["drop", "left", "error"])
def test_giant_word_reply_is_dropped_without_tokenizing(tokenized_lengths, truncation):
    recs = [Record.alpaca("Say a lot.", "a" * MB3, source=Source("big.jsonl", 1)),
            Record.alpaca("Say hi.", "Hi!", source=Source("big.jsonl", 2))]
    tok = TOKS["llama"]
    with deadline(20):
        if truncation == "error":
            with pytest.raises(Exception, match="big.jsonl:1"):
                build_examples(recs, tok, "alpaca", max_length=64, truncation=truncation,
                               cache_dir="none")
            return
        r = build_examples(recs, tok, "alpaca", max_length=64, truncation=truncation,
                           cache_dir="none")
    assert [e.source.line for e in r.examples] == [2]
    assert r.dropped[0].line == 1 and "not tokenized" in r.dropped[0].message
    assert max(tokenized_lengths) < 1_000


def test_giant_prompt_left_truncation_tokenizes_only_a_tail(tokenized_lengths):
    rng = random.Random(0)
    recs = [Record.alpaca(words(rng, MB3), "The end.", source=Source("big.jsonl", 1)),
            Record.alpaca("b" * MB3, "ok", source=Source("big.jsonl", 2))]
    with deadline(20):
        r = build_examples(recs, TOKS["llama"], "alpaca", max_length=64, truncation="left",
                           cache_dir="none")
    budget = (64 + 1 + long_rows.MARGIN) * long_rows.max_token_chars(
        TOKS["llama"].backend_tokenizer)
    assert max(tokenized_lengths) <= 2 * budget + 1 < 100_000
    kept = {e.source.line: e for e in r.examples}
    assert len(kept[1].input_ids) == 64 and kept[1].labels[-1] == kept[1].input_ids[-1]
    # A giant word's tail tokens depend on where it is cut: kept only when two cuts agree.
    assert 2 in kept or "cut exactly" in r.dropped[0].message


@pytest.fixture(scope="module")
def giant_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("giant") / "giant.jsonl"
    path.write_text(json.dumps({"prompt": "Say a lot.", "completion": "a" * MB3}) + "\n")
    return path


def test_commands_answer_a_giant_row_quickly(giant_file, model_dirs, tmp_path, capsys):
    model = str(model_dirs["llama"])
    with deadline(30):
        assert main(["inspect", str(giant_file), "--model", model, "--cache-dir", "none"]) == 0
        assert "not tokenized" in capsys.readouterr().out
        assert main(["audit", str(giant_file), "--model", model]) in (0, 1)
        assert main(["train", "--model", model, "--data", str(giant_file),
                     "--out", str(tmp_path / "run"), "--cache-dir", "none"]) != 0
    assert "not tokenized" in capsys.readouterr().err
