"""Templates: exact alpaca strings, reply spans from rendered parts (not markers), a Jinja export
that reproduces the training prompt, and save/load round trips."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from instruct_tune.data.records import Message, Record, Source
from instruct_tune.data.templates import Template, TemplateRenderError, get_template
from instruct_tune.errors import ConfigError
from tests.conftest import get_tokenizer

LLAMA3_LIKE = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")
GEMMA_LIKE = (
    "{{ bos_token }}{% for m in messages %}{% set role = 'model' if m['role'] == 'assistant' else m['role'] %}"
    "<start_of_turn>{{ role }}\n{{ m['content'] }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")


def chat(*pairs, system=None) -> Record:
    msgs = [Message("system", system)] if system else []
    for user, reply in pairs:
        msgs += [Message("user", user), Message("assistant", reply)]
    return Record(tuple(msgs), Source("c.jsonl", 1))


def joined(segments) -> tuple[str, str]:
    prompt = "".join(s.text for s in segments if not s.trainable)
    reply = "".join(s.text for s in segments if s.trainable)
    return prompt, reply


def test_alpaca_exact_seed_strings():
    t = get_template("alpaca")
    segs = t.render(Record.alpaca("Name a fruit.", "Apple."))
    assert [(s.text, s.trainable) for s in segs] == [
        ("### Instruction:\nName a fruit.\n\n### Response:\n", False), ("Apple.", True)]
    segs = t.render(Record.alpaca("Add them.", "3", input="1, 2"))
    assert [(s.text, s.trainable) for s in segs] == [
        ("### Instruction:\nAdd them.\n\n### Input:\n1, 2\n\n### Response:\n", False), ("3", True)]
    assert t.render_prompt([Message("user", "Add them.", "1, 2")]) == segs[0].text
    assert get_template(None) is t  # the default


def test_alpaca_system_and_multi_turn():
    t = get_template("alpaca")
    rec = chat(("Hi", "Hello"), ("Bye", "Ciao"), system="Be kind.")
    segs = t.render(rec)
    assert [s.trainable for s in segs] == [False, True, False, True]
    assert segs[0].text == "Be kind.\n\n### Instruction:\nHi\n\n### Response:\n"
    assert segs[2].text == "\n\n### Instruction:\nBye\n\n### Response:\n"  # after Hello + EOS
    assert t.render_text(rec, "</s>") == ("Be kind.\n\n### Instruction:\nHi\n\n### Response:\nHello</s>"
                                          "\n\n### Instruction:\nBye\n\n### Response:\nCiao</s>")


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=30), st.text(max_size=30), st.text(max_size=30))
def test_marker_text_never_moves_the_boundary(instruction, inp, reply):
    """Text like '### Response:' or '{input}' inside the data stays data."""
    for name in ("alpaca", "chatml", "raw"):
        t = get_template(name)
        rec = Record.alpaca(instruction + "### Response:\n{input}", "### Response:\n" + reply, input=inp)
        prompt, got = joined(t.render(rec))
        assert got == "### Response:\n" + reply
        assert prompt == t.render_prompt(rec.prompt_messages())
        assert instruction + "### Response:\n{input}" in prompt


def exported(template: Template):
    tok = copy.deepcopy(get_tokenizer("chatml"))
    tok.chat_template = template.to_chat_template()
    return tok


CONVERSATIONS = [
    [{"role": "user", "content": "Name a color."}],
    [{"role": "user", "content": "Add {input} them.", "input": "1, 2"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
     {"role": "user", "content": "More?", "input": "x"}],
]


@pytest.mark.parametrize("name", ["alpaca", "chatml", "raw"])
@pytest.mark.parametrize("conversation", CONVERSATIONS)
def test_exported_chat_template_reproduces_the_training_prompt(name, conversation):
    t = get_template(name)
    tok = exported(t)
    got = tok.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    assert got == t.render_prompt(conversation, eos_token=tok.eos_token)


@settings(max_examples=40, deadline=None)
@given(st.text(max_size=20), st.text(max_size=20), st.text(max_size=20))
def test_exported_alpaca_matches_on_random_text(instruction, inp, system):
    t = get_template("alpaca")
    tok = exported(t)
    conv = ([{"role": "system", "content": system}] if system else []) + \
        [{"role": "user", "content": instruction, "input": inp}]
    assert tok.apply_chat_template(conv, add_generation_prompt=True, tokenize=False) == \
        t.render_prompt(conv)


def test_custom_yaml_template(tmp_path):
    path = tmp_path / "qa.yaml"
    path.write_text('user: "Q: {instruction}\\n"\nuser_with_input: "Q: {instruction}\\nContext: {input}\\n"\n'
                    'assistant: "A: "\nafter_stop: "\\n"\n')
    t = get_template(str(path))
    assert joined(t.render(Record.alpaca("Why?", "Because.", input="c"))) == \
        ("Q: Why?\nContext: c\nA: ", "Because.")
    tok = exported(t)
    conv = CONVERSATIONS[3]
    assert tok.apply_chat_template(conv, add_generation_prompt=True, tokenize=False) == \
        t.render_prompt(conv, eos_token=tok.eos_token)
    bad = tmp_path / "bad.yaml"
    bad.write_text('user: "{instruction}"\nrespone: "x"\n')
    with pytest.raises(ConfigError, match="respone"):
        get_template(str(bad))


@pytest.mark.parametrize("source,stop_token", [(LLAMA3_LIKE, "<|eot_id|>"), (GEMMA_LIKE, "<end_of_turn>")])
def test_model_templates_without_generation_markers(source, stop_token):
    tok = copy.deepcopy(get_tokenizer("llama"))
    tok.add_special_tokens({"additional_special_tokens": [
        "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<start_of_turn>", "<end_of_turn>"]})
    tok.chat_template = source
    t = get_template("model", tok)
    assert t.stop == stop_token
    rec = chat(("Hi", "Hello there"), ("Again", "Sure"), system="S")
    segs = t.render(rec)
    assert [s.text for s in segs if s.trainable] == ["Hello there", "Sure"]
    assert segs[0].text.startswith(tok.bos_token)
    # The generation prompt is the tokenizer's own rendering (with add_generation_prompt).
    conv = [{"role": m.role, "content": m.content} for m in rec.prompt_messages()]
    prompt = t.render_prompt(rec.prompt_messages())
    assert prompt == tok.apply_chat_template(conv, add_generation_prompt=True, tokenize=False)


def test_model_template_needs_a_chat_template():
    with pytest.raises(ConfigError, match="chat_template"):
        get_template("model", get_tokenizer("gpt2"))


def test_template_that_rewrites_history_is_reported():
    """A template that renders earlier turns differently once more turns follow can't be split."""
    tok = copy.deepcopy(get_tokenizer("chatml"))
    tok.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
                         "{{ m['content'] if loop.last or m['role'] != 'assistant' else '...' }}"
                         "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    t = get_template("model", tok)
    t.render(chat(("a", "b")))  # one turn is fine
    with pytest.raises(TemplateRenderError):
        t.render(chat(("a", "b"), ("c", "d")))


@pytest.mark.parametrize("name", ["alpaca", "chatml", "raw", "model", "yaml"])
def test_save_load_round_trip(name, tmp_path):
    tok = get_tokenizer("chatml")
    if name == "yaml":
        (tmp_path / "t.yaml").write_text('user: "U {instruction}|"\nassistant: ">"\nstop: "<|im_end|>"\n')
        name = str(tmp_path / "t.yaml")
    t = get_template(name, tok)
    t.save(tmp_path / "run")
    loaded = Template.load(tmp_path / "run")
    assert loaded == t and type(loaded) is type(t)
    rec = chat(("Hi", "Hello"), ("Bye", "Ciao"), system="S")
    assert loaded.render(rec) == t.render(rec)
    assert get_template(str(tmp_path / "run"), tok) == t  # a run directory works as --template
    assert Template.load(tmp_path / "nothing-here") is None


def test_unknown_template_name():
    with pytest.raises(ConfigError, match="alpaca, chatml"):
        get_template("alpacca")
