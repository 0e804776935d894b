"""Pair tokenization: the prompt's ids are the inference prompt, shared by both answers; each answer
is exactly the trained part of the SFT example for prompt + that answer, ending in one stop token."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from instruct_tune.data.pair_tokenize import PairExample, build_pair, build_pairs
from instruct_tune.data.pairs import PairRecord
from instruct_tune.data.records import Message, Source
from instruct_tune.data.templates import get_template
from instruct_tune.data.tokenize import (
    IGNORE,
    build_example,
    build_examples,
    encode_prompt,
    stop_token_ids,
)
from tests.conftest import get_tokenizer

CASES = [("llama", "alpaca"), ("llama", "raw"), ("gpt2", "alpaca"), ("gpt2", "raw"),
         ("chatml", "alpaca"), ("chatml", "chatml"), ("chatml", "model")]
# Pieces that make BPE merge across the prompt/answer boundary ("th" | "e cat"), whitespace that
# pre-tokenizers attach to the next word, and template-like text.
PIECES = ["th", "e", "the", " the", " cat", "ca", "t", "ing", "!", " ", "  ", "\n", "\n\n", "\t",
          "### Response:\n", "### Instruction:\n", "é", "日本", "🙂", ":", "1", " 2"]
EDGES = ["", " ", "\n", "  ", "\n\n", " \n", "\t"]
SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def text():
    chars = st.characters(exclude_categories=("Cs",))
    return st.lists(st.one_of(st.text(chars, max_size=8), st.sampled_from(PIECES)), max_size=5).map("".join)


def edged():
    """Non-blank text (as load_pairs requires of user turns and answers) with whitespace, or
    nothing, at both ends: where prompt meets answer."""
    word = st.sampled_from([p for p in PIECES if p.strip()])
    return st.tuples(st.sampled_from(EDGES), text(), word, text(), st.sampled_from(EDGES)).map("".join)


@st.composite
def pairs(draw) -> PairRecord:
    msgs = [Message("system", draw(text()))] if draw(st.booleans()) else []
    for _ in range(draw(st.integers(0, 2))):  # earlier turns: history in the prompt
        msgs += [Message("user", draw(edged())), Message("assistant", draw(edged()))]
    msgs.append(Message("user", draw(edged()), draw(st.sampled_from(["", "some input"]))))
    return PairRecord(tuple(msgs), draw(edged()), draw(edged()), Source("p.jsonl", 1))


def decode(tok, ids) -> str:
    return tok.backend_tokenizer.decode(ids, skip_special_tokens=False)


def adds_bos(tok) -> bool:
    return tok.bos_token_id not in (None, tok.eos_token_id) and tok("a")["input_ids"][0] == tok.bos_token_id


def check_pair(tok, template, pair: PairRecord, ex: PairExample) -> None:
    stop = stop_token_ids(tok, template)[0]
    prompt = ex.prompt_ids
    assert prompt == encode_prompt(pair.prompt, tok, template), "prompt != inference prompt"
    history = any(m.role == "assistant" for m in pair.prompt)
    for answer, ids in (("chosen", ex.chosen_ids), ("rejected", ex.rejected_ids)):
        sft = build_example(pair.record(answer), tok, template, max_length=100_000)
        # The SFT row for prompt + answer is exactly the shared prompt followed by this answer...
        assert sft.input_ids == prompt + ids
        # ...and the answer is exactly its last trained run (all of its trained part without history).
        assert sft.labels[len(prompt):] == ids and sft.labels[len(prompt) - 1] == IGNORE
        if not history:
            assert [y for y in sft.labels if y != IGNORE] == ids
        # One stop token, at the end, appended by id; nothing else of the answer is a stop/EOS.
        assert ids[-1] == stop and stop not in ids[:-1] and tok.eos_token_id not in ids[:-1]
        text = getattr(pair, answer)
        got = decode(tok, prompt + ids[:-1])
        if template.name == "model":  # the Jinja template may strip the reply it renders
            assert got.startswith(decode(tok, prompt)) and text.strip() in got[len(decode(tok, prompt)):]
        else:
            assert got == decode(tok, prompt) + text
    if tok.bos_token_id not in (None, tok.eos_token_id):
        everything = prompt + ex.chosen_ids + ex.rejected_ids
        assert everything.count(tok.bos_token_id) <= 1, "BOS at most once"
        if adds_bos(tok):
            assert prompt[0] == tok.bos_token_id


def run_property(tok, template_name: str, avoid: tuple[str, ...] = ()) -> None:
    template = get_template(template_name, tok)
    avoid = (template.stop or tok.eos_token, tok.eos_token, *avoid)

    @SETTINGS
    @given(pairs())
    def prop(pair):
        texts = [m.content + m.input for m in pair.prompt] + [pair.chosen, pair.rejected]
        assume(not any(a in t for a in avoid for t in texts))
        result = build_pairs([pair], tok, template, max_length=100_000, cache_dir="none")
        assert not result.dropped, result.dropped
        check_pair(tok, template, pair, result.examples[0])

    prop()


@pytest.mark.parametrize("kind,template_name", CASES)
def test_answers_equal_sft_trained_part(kind, template_name):
    run_property(get_tokenizer(kind), template_name)


def test_answers_equal_sft_trained_part_sentencepiece(stories_dir):
    """The real Llama-2-style SentencePiece tokenizer (dummy-prefix space, byte fallback)."""
    from transformers import AutoTokenizer

    # SentencePiece maps "▁" to a space by design: texts holding it cannot round-trip.
    run_property(AutoTokenizer.from_pretrained(str(stories_dir)), "alpaca", avoid=("▁",))


def test_shared_prompt_where_bpe_merges_across_the_boundary():
    """raw template: the prompt text ends in "th", the chosen answer starts with "e": tokenized as one
    text "the" is one token. The prompt keeps its own ids, the same for both answers."""
    tok = get_tokenizer("llama")
    pair = PairRecord((Message("user", "Name th"),), "e cat", "at dog", Source("p.jsonl", 1))
    ex = build_pair(pair, tok, "raw")
    joint = tok("Name the cat", add_special_tokens=True)["input_ids"]
    assert joint[:len(ex.prompt_ids)] != ex.prompt_ids, "setup: BPE should merge across the boundary"
    assert ex.prompt_ids == encode_prompt(pair.prompt, tok, "raw")
    assert decode(tok, ex.prompt_ids + ex.chosen_ids[:-1]) == decode(tok, joint)


@pytest.mark.parametrize("kind", ["llama", "gpt2", "chatml"])
def test_stop_once_bos_once_and_pad_equals_eos(kind):
    tok = get_tokenizer(kind)
    pair = PairRecord((Message("user", "Count to three."),), "1 2 3", "1 2", Source("p.jsonl", 1))
    ex = build_pair(pair, tok, "alpaca")
    eos = tok.eos_token_id
    for ids in (ex.chosen_ids, ex.rejected_ids):
        assert ids[-1] == eos and ids.count(eos) == 1
    assert eos not in ex.prompt_ids  # gpt2: its pad and BOS are this same id, yet none sneaks in
    if kind == "llama":
        assert ex.prompt_ids[0] == tok.bos_token_id and ex.prompt_ids.count(tok.bos_token_id) == 1
    # As an SFT row (e.g. for an SFT term), the EOS stays a target even where pad == eos.
    row = ex.example("chosen")
    assert row.labels[-1] == eos and row.labels[:len(ex.prompt_ids)] == [IGNORE] * len(ex.prompt_ids)


def test_over_max_length_is_dropped_and_reported_never_cut():
    tok = get_tokenizer("llama")
    short = PairRecord((Message("user", "Hi"),), "Hello", "Go", Source("p.jsonl", 3))
    long = PairRecord((Message("user", "Tell a story."),), "one two three four five six",
                      "one", Source("p.jsonl", 7))
    full = build_pairs([short, long], tok, "alpaca", max_length=100_000, cache_dir="none")
    a, b = full.examples
    limit = len(b.prompt_ids) + len(b.chosen_ids) - 1
    assert len(a) <= limit  # the short pair still fits
    result = build_pairs([short, long], tok, "alpaca", max_length=limit, cache_dir="none")
    assert [e.source.line for e in result.examples] == [3]
    assert result.examples[0] == a, "the pair that fits is unchanged"
    [problem] = result.dropped
    assert str(problem).startswith(f"p.jsonl:7: prompt {len(b.prompt_ids)} + longest answer "
                                   f"{len(b.chosen_ids)} tokens > --max-length {limit}; ")
    assert len(build_pairs([long], tok, "alpaca", max_length=limit + 1, cache_dir="none")) == 1


@pytest.mark.parametrize("kind,template_name", [("llama", "alpaca"), ("chatml", "chatml"),
                                                ("chatml", "model")])
def test_answer_with_stop_token_text_is_a_problem(kind, template_name):
    tok = get_tokenizer(kind)
    stop = get_template(template_name, tok).stop or tok.eos_token
    good = PairRecord((Message("user", "Q"),), "yes", "no", Source("p.jsonl", 1))
    one = PairRecord((Message("user", "Q"),), "yes", f"no{stop} more", Source("p.jsonl", 2))
    both = PairRecord((Message("user", "Q"),), f"yes{stop}", f"no{stop}", Source("p.jsonl", 3))
    result = build_pairs([good, one, both], tok, template_name, max_length=512, cache_dir="none")
    assert [e.source.line for e in result.examples] == [1]
    assert [(p.line, p.field) for p in result.dropped] == [(2, "rejected"), (3, "chosen, rejected")]
    assert all(re.search(r"stop token text.*; fix the answer or drop the pair", p.message)
               for p in result.dropped)


def test_cache_round_trip_and_key_differs_from_sft(tmp_path):
    tok = get_tokenizer("llama")
    pairs_ = [PairRecord((Message("user", "Hi"), Message("assistant", "Hello"), Message("user", "2+2?")),
                         "4", "5", Source("p.jsonl", 1)),
              PairRecord((Message("user", "Write a long one."),), "a " * 50, "b", Source("p.jsonl", 2))]
    first = build_pairs(pairs_, tok, "alpaca", max_length=40, cache_dir=str(tmp_path))
    again = build_pairs(pairs_, tok, "alpaca", max_length=40, cache_dir=str(tmp_path))
    assert not first.cached and again.cached
    assert again.examples == first.examples and again.dropped == first.dropped
    assert len(first.examples) == 1 and len(first.dropped) == 1
    # SFT rows of the same conversations never read the pair entry (nor the reverse).
    flat = [p.record(a) for p in pairs_ for a in ("chosen", "rejected")]
    sft = build_examples(flat, tok, "alpaca", max_length=40, cache_dir=str(tmp_path))
    assert not sft.cached
    assert not build_pairs(pairs_, tok, "alpaca", max_length=41, cache_dir=str(tmp_path)).cached
