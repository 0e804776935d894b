"""Masking properties on random text: the reply boundary is exact, one trained stop per turn,
prompt ids identical to what inference feeds the model, at most one BOS."""

from __future__ import annotations

import copy

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from instruct_tune.data.pack import collate, packed_rows
from instruct_tune.data.records import Message, Record, Source
from instruct_tune.data.templates import get_template
from instruct_tune.data.tokenize import (
    IGNORE,
    Encoder,
    _turns,
    build_example,
    build_examples,
    encode_prompt,
    stop_token_ids,
)
from instruct_tune.errors import DataError
from tests.conftest import STORIES, get_tokenizer

MARKERS = ["### Response:\n", "### Instruction:\n", "### Input:\n", "\n\n", "\n", " ", "  ",
           "{input}", "{instruction}", "<|im_start|>assistant\n", "Response:", "é", "日本", "🙂", "\t"]

FRAGMENTS = ["th", "e", "the", " the", "he", "llo", "hel", "lo", "ca", "t", " cat", "s", "ing", "!"]

CASES = [("llama", "alpaca"), ("llama", "raw"), ("gpt2", "alpaca"), ("gpt2", "raw"),
         ("chatml", "alpaca"), ("chatml", "chatml"), ("chatml", "model")]


def load_tokenizer(kind: str):
    if kind == "stories":
        if not (STORIES / "tokenizer.json").is_file():
            pytest.skip("stories260k not present")
        from transformers import AutoTokenizer

        return get_tokenizer.__globals__["_TOKENIZERS"].setdefault(
            "stories", AutoTokenizer.from_pretrained(str(STORIES)))
    return get_tokenizer(kind)


def texts(kind: str):
    # SentencePiece maps "▁" to a space by design; everything else must round-trip.
    chars = st.characters(exclude_categories=("Cs",), exclude_characters="▁" if kind == "stories" else "")
    # Word fragments make BPE merge across the prompt/reply boundary ("th" + "e cat").
    piece = st.one_of(st.text(chars, max_size=12), st.sampled_from(MARKERS), st.sampled_from(FRAGMENTS))
    return st.lists(piece, max_size=5).map("".join)


def conversation(kind: str):
    t = texts(kind)
    turn = st.tuples(t, t, t)  # instruction, input, reply
    return st.tuples(st.one_of(st.none(), t), st.lists(turn, min_size=1, max_size=3))


def make_record(system, turns) -> Record:
    msgs = [Message("system", system)] if system is not None else []
    for i, (instruction, inp, reply) in enumerate(turns):
        msgs += [Message("user", instruction, inp if i == 0 else ""), Message("assistant", reply)]
    return Record(tuple(msgs), Source("mem.jsonl", 1))


def decode(tok, ids) -> str:
    # The Rust decoder directly: no clean-up of spaces, special tokens kept as text.
    return tok.backend_tokenizer.decode(ids, skip_special_tokens=False)


def adds_bos(tok) -> bool:
    """Whether the tokenizer itself prepends a BOS (seen on a probe, not read from the code)."""
    ids = tok("a")["input_ids"]
    return (tok.bos_token_id is not None and tok.bos_token_id != tok.eos_token_id
            and ids[:1] == [tok.bos_token_id] != tok("a", add_special_tokens=False)["input_ids"][:1])


def trained_runs(ids, labels, stop_id) -> list[tuple[int, int]]:
    """(first, stop) index of each labelled run; every run must end with its stop token."""
    runs, start = [], None
    for i, y in enumerate(labels):
        if y != IGNORE and start is None:
            start = i
        if y != IGNORE and ids[i] == stop_id:
            runs.append((start, i))
            start = None
    assert start is None, "a labelled run does not end with the stop token"
    return runs


def check_example(tok, template, record: Record, ex) -> None:
    ids, labels = ex.input_ids, ex.labels
    stop_id = stop_token_ids(tok, template)[0]
    assert len(ids) == len(labels)
    assert all(y in (IGNORE, x) for x, y in zip(ids, labels, strict=True)), "label != id"
    assert labels[-1] == stop_id and ids[-1] == stop_id, "row must end with a trained stop"
    # Labelled runs, each ended by its stop token (replies never contain the stop: checked below).
    runs = trained_runs(ids, labels, stop_id)
    replies = [m.content for m in record.messages if m.role == "assistant"]
    assert len(runs) == len(replies), "exactly one trained stop per assistant turn"
    for (s, e), reply in zip(runs, replies, strict=True):
        if template.name == "model":  # text the template adds before its stop is trained too
            assert decode(tok, ids[:e]).startswith(decode(tok, ids[:s]) + reply)
        else:
            assert decode(tok, ids[:e]) == decode(tok, ids[:s]) + reply
        assert stop_id not in ids[s:e]
    # Prompt ids of the last turn are exactly what inference encodes.
    prompt = encode_prompt(record.prompt_messages(), tok, template)
    assert ids[:len(prompt)] == prompt
    assert runs[-1][0] == len(prompt)
    if tok.bos_token_id is not None and tok.bos_token_id != tok.eos_token_id:
        assert ids.count(tok.bos_token_id) <= 1
    if adds_bos(tok) and not any(tok.bos_token in m.content for m in record.messages):
        assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1, "BOS exactly once"


def run_property(kind: str, template_name: str, system, turns) -> None:
    tok = load_tokenizer(kind)
    template = get_template(template_name, tok)
    record = make_record(system, turns)
    result = build_examples([record], tok, template, max_length=10_000, cache_dir="none")
    stop_text = template.stop or tok.eos_token
    if any(stop_text in m.content or tok.eos_token in m.content
           for m in record.messages if m.role == "assistant"):
        assert not result.examples and "stop token" in result.dropped[0].message
        return
    assert not result.dropped, result.dropped
    check_example(tok, template, record, result.examples[0])


SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.mark.parametrize("kind,template_name", CASES)
def test_mask_properties(kind, template_name):
    @SETTINGS
    @given(conversation(kind))
    def prop(conv):
        run_property(kind, template_name, *conv)

    prop()


def test_mask_properties_sentencepiece():
    """The real Llama-2-style SentencePiece tokenizer (dummy-prefix space, byte fallback)."""
    load_tokenizer("stories")

    @SETTINGS
    @given(conversation("stories"))
    def prop(conv):
        run_property("stories", "alpaca", *conv)

    prop()


@pytest.mark.parametrize("kind,template_name", [("llama", "raw"), ("chatml", "model"), ("stories", "alpaca")])
def test_fast_path_equals_general_path(kind, template_name):
    """The one-pass BPE path (split at a token boundary of the joint encoding) gives exactly the ids
    of the general path (prompt tokenized alone, reply as its verified continuation)."""
    tok = load_tokenizer(kind)
    template = get_template(template_name, tok)
    fast, general = Encoder(tok, template), Encoder(tok, template)
    assert fast._bpe
    general._bpe = False

    @SETTINGS
    @given(st.lists(conversation(kind), min_size=1, max_size=4))
    def prop(convs):
        batch = [_turns(template.render(make_record(*c))) for c in convs]
        assert fast.encode_turns(batch) == general.encode_turns(batch)

    prop()


@pytest.mark.parametrize("kind", ["llama", "gpt2", "chatml"])
def test_alpaca_exact_strings_and_stop(kind):
    tok = get_tokenizer(kind)
    ex = build_example(Record.alpaca("Name a color.", "Blue", input="sky"), tok, "alpaca")
    prompt = "### Instruction:\nName a color.\n\n### Input:\nsky\n\n### Response:\n"
    n = len(ex.input_ids) - ex.num_trained
    assert decode(tok, ex.input_ids[:n]).endswith(prompt)
    assert ex.input_ids[-1] == tok.eos_token_id and ex.labels[-1] == tok.eos_token_id
    assert ex.input_ids.count(tok.eos_token_id) == 1


def test_pad_equals_eos_keeps_eos_trained():
    """pad == eos: the EOS after each reply stays a target all the way into the batch, while the
    padding (the same id) is never one. Masking by id instead of position would lose the EOS."""
    tok = get_tokenizer("gpt2")
    eos = tok.eos_token_id
    assert tok.pad_token_id == eos
    exs = [build_example(Record.alpaca("Count to two.", "1 2"), tok, "alpaca"),
           build_example(Record.alpaca("Count to ten, please.", "1 2 3 4 5 6 7 8 9 10"), tok, "alpaca")]
    for ex in exs:
        assert ex.input_ids[-1] == eos and ex.labels[-1] == eos
    for packed in (False, True):
        b = collate(exs, tok.pad_token_id, max_length=128, rows=packed_rows(exs, 128) if packed else None)
        assert int((b.input_ids == eos).sum()) > len(exs)  # really padded with the EOS id
        assert int((b.labels == eos).sum()) == len(exs)  # one EOS target per example, no padding
        assert b.num_trained == sum(ex.num_trained for ex in exs)


def test_no_double_bos_when_template_has_one():
    tok = get_tokenizer("llama")
    tok_bos = tok.bos_token
    template = get_template("raw")
    ex = build_example(Record.alpaca(tok_bos + "Hello", "world"), tok, template)
    assert ex.input_ids.count(tok.bos_token_id) == 1 and ex.input_ids[0] == tok.bos_token_id
    plain = build_example(Record.alpaca("Hello", "world"), tok, template)
    assert plain.input_ids[0] == tok.bos_token_id  # and one is added when the text has none


def test_no_double_eos_when_chat_template_ends_turn_with_eos(tmp_path):
    tok = get_tokenizer("llama")
    jinja = tmp_path / "t.jinja"
    jinja.write_text("{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}"
                     "[INST] {{ m['content'] }} [/INST]{% else %} {{ m['content'] }}{{ eos_token }}"
                     "{% endif %}{% endfor %}")
    template = get_template(str(jinja), tok)
    assert template.stop == tok.eos_token
    ex = build_example(Record.alpaca("Hi", "Hello"), tok, template)
    assert ex.input_ids.count(tok.eos_token_id) == 1 and ex.labels[-1] == tok.eos_token_id
    assert ex.input_ids.count(tok.bos_token_id) == 1  # from the template text, not added again


def test_end_of_turn_token_differs_from_eos():
    """A base model whose chat template ends turns with <|im_end|> but whose eos is another token:
    the end-of-turn token is trained and generation stops on both."""
    tok = copy.deepcopy(get_tokenizer("chatml"))
    tok.eos_token = "<|endoftext|>"
    template = get_template("model", tok)
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert stop_token_ids(tok, template) == [im_end, tok.eos_token_id]
    ex = build_example(Record.alpaca("Hi", "Hello"), tok, template)
    assert ex.input_ids[-1] == im_end and ex.labels[-1] == im_end
    assert tok.eos_token_id not in ex.input_ids


@pytest.mark.parametrize("kind", ["llama", "gpt2", "chatml", "stories"])
def test_bpe_merge_across_the_boundary(kind):
    """'th' + 'e cat' tokenizes jointly as 'the' + ' cat': the prompt ids must still be exactly the
    prompt's own ids and the reply must decode to 'e cat'."""
    tok = load_tokenizer(kind)
    template = get_template("raw")
    prompt, reply = ("ha", "ppy cat") if kind == "stories" else ("th", "e cat")
    joint = tok(prompt + reply, add_special_tokens=False)["input_ids"]
    alone = tok(prompt, add_special_tokens=False)["input_ids"]
    assert joint[:len(alone)] != alone  # the case this test is about
    rec = Record.alpaca(prompt, reply)
    check_example(tok, template, rec, build_example(rec, tok, template))


def test_multi_turn_trains_every_reply():
    tok = get_tokenizer("chatml")
    rec = Record((Message("system", "Be brief."), Message("user", "Hi"), Message("assistant", "Hello"),
                  Message("user", "Bye"), Message("assistant", "Ciao")), Source("c.jsonl", 3))
    for name in ("alpaca", "chatml", "model"):
        template = get_template(name, tok)
        ex = build_example(rec, tok, template)
        check_example(tok, template, rec, ex)


def test_truncation_modes():
    tok = get_tokenizer("gpt2")
    long_prompt = Record.alpaca("word " * 60, "short answer", source=Source("d.jsonl", 7))
    long_reply = Record.alpaca("short", "word " * 60, source=Source("d.jsonl", 8))
    ok = Record.alpaca("hi", "hello", source=Source("d.jsonl", 9))
    full = build_example(long_prompt, tok, "alpaca", max_length=10_000)
    limit = 40
    assert len(full.input_ids) > limit

    dropped = build_examples([long_prompt, long_reply, ok], tok, "alpaca", max_length=limit,
                             cache_dir="none")
    assert len(dropped.examples) == 1
    assert [(p.path, p.line) for p in dropped.dropped] == [("d.jsonl", 7), ("d.jsonl", 8)]
    assert "max-length" in dropped.dropped[0].message

    left = build_examples([long_prompt, long_reply, ok], tok, "alpaca", max_length=limit,
                          truncation="left", cache_dir="none")
    assert [(p.path, p.line) for p in left.dropped] == [("d.jsonl", 8)]
    cut = left.examples[0]
    assert len(cut.input_ids) == limit
    n = full.num_trained
    assert cut.input_ids[-n:] == full.input_ids[-n:] and cut.labels[-n:] == full.labels[-n:]
    assert all(y == IGNORE for y in cut.labels[:-n])

    from instruct_tune.errors import DataError

    with pytest.raises(DataError) as err:
        build_examples([long_prompt, long_reply, ok], tok, "alpaca", max_length=limit,
                       truncation="error", cache_dir="none")
    assert "d.jsonl:7" in str(err.value) and "d.jsonl:8" in str(err.value)


@pytest.mark.parametrize("kind,template_name", [("llama", "alpaca"), ("gpt2", "raw"), ("chatml", "chatml")])
def test_truncation_never_cuts_a_reply_silently(kind, template_name):
    """Any conversation, any --max-length, every --truncation mode: a row that fits is untouched;
    one that does not is reported with its file:line (drop, error) or, with left, loses prompt
    tokens only: BOS stays, the last reply and its stop stay trained, every reply still whole
    in the window stays trained, and a reply cut in two is no longer trained."""
    tok = get_tokenizer(kind)
    template = get_template(template_name, tok)
    stop_id = stop_token_ids(tok, template)[0]
    bos = adds_bos(tok)

    @SETTINGS
    @given(conversation(kind), st.data())
    def prop(conv, data):
        record = make_record(*conv)
        built = build_examples([record], tok, template, max_length=10**6, cache_dir="none")
        assume(built.examples)  # replies holding the stop text are dropped for another reason
        full = built.examples[0]
        n = len(full.input_ids)
        runs = trained_runs(full.input_ids, full.labels, stop_id)
        nb = 1 if bos and full.input_ids[0] == tok.bos_token_id else 0
        # Windows starting just before, at and after each reply and stop, besides any length.
        edges = {nb + n - i + d for s, e in runs for i in (s, e + 1) for d in (-1, 0, 1)}
        max_length = data.draw(st.one_of(st.sampled_from(sorted(x for x in edges | {n} if x >= 2)),
                                         st.integers(2, n + 2)), label="max_length")
        mode = data.draw(st.sampled_from(["drop", "left", "error"]), label="truncation")
        if mode == "error" and n > max_length:
            with pytest.raises(DataError, match="mem.jsonl:1"):
                build_examples([record], tok, template, max_length, mode, cache_dir="none")
            return
        got = build_examples([record], tok, template, max_length, mode, cache_dir="none")
        if n <= max_length:
            assert not got.dropped
            assert (got[0].input_ids, got[0].labels) == (full.input_ids, full.labels)
            return
        last_reply = n - runs[-1][0]  # reply tokens + stop
        if mode == "drop" or nb + last_reply > max_length:
            assert not got.examples
            assert [(p.path, p.line) for p in got.dropped] == [("mem.jsonl", 1)]
            assert "max-length" in got.dropped[0].message
            return
        if nb + last_reply == max_length:  # no room for any prompt token: either is fine
            assume(got.examples)
        assert not got.dropped, got.dropped
        ex, cut = got[0], n - max_length
        assert len(ex.input_ids) == max_length
        assert ex.input_ids == full.input_ids[:nb] + full.input_ids[nb + cut:]  # cut from the left
        want = [IGNORE] * n
        for s, e in runs:
            if s >= nb + cut:  # whole reply (and its stop) inside the window
                want[s:e + 1] = full.labels[s:e + 1]
        assert ex.labels == want[:nb] + want[nb + cut:]

    prop()


def test_left_truncation_with_back_to_back_replies():
    """Replies separated only by a stop token: the last reply alone decides whether the row fits,
    and a whole earlier reply at the window's start stays trained."""
    tok = get_tokenizer("gpt2")
    template = get_template("raw", tok)
    stop_id = stop_token_ids(tok, template)[0]
    rec = make_record(None, [("Say it", "", "hello there"), ("", "", "world peace"),
                             ("Why is it", "", "end")])
    full = build_example(rec, tok, template, max_length=10_000)
    (_, e1), (s2, e2), _ = trained_runs(full.input_ids, full.labels, stop_id)
    assert s2 == e1 + 1  # the case: reply 2 follows reply 1's stop directly
    n = len(full.input_ids)
    ex = build_example(rec, tok, template, max_length=n - s2, truncation="left")
    assert ex is not None and ex.labels[:e2 - s2 + 1] == full.labels[s2:e2 + 1]  # reply 2 whole
    two = make_record(None, [("", "", "hello"), ("", "", "world")])
    full = build_example(two, tok, template, max_length=10_000)
    assert build_example(two, tok, template, max_length=len(full.input_ids) - 1,
                         truncation="left") is not None  # "world" + stop fits easily


def test_left_truncation_keeps_bos_and_unlabels_a_cut_reply():
    tok = get_tokenizer("llama")
    rec = Record((Message("user", "one"), Message("assistant", "word " * 30),
                  Message("user", "two"), Message("assistant", "fine")), Source("m.jsonl", 1))
    full = build_example(rec, tok, "alpaca", max_length=10_000)
    ex = build_example(rec, tok, "alpaca", max_length=len(full.input_ids) - 15, truncation="left")
    assert ex.input_ids[0] == tok.bos_token_id
    eos = tok.eos_token_id
    assert [y for y in ex.labels if y == eos] == [eos]  # only the last reply is still trained
    assert decode(tok, [y for y in ex.labels if y != IGNORE][:-1]) == "fine"


def test_chatml_without_its_tokens_errors_clearly():
    from instruct_tune.errors import ConfigError

    with pytest.raises(ConfigError, match="resize"):
        build_example(Record.alpaca("a", "b"), get_tokenizer("gpt2"), "chatml")
