"""Batched generation: same tokens as one-at-a-time plain generate, cut at the stop token."""

from __future__ import annotations

import pytest
import torch

from instruct_tune.data.records import Message
from instruct_tune.data.templates import get_template
from instruct_tune.errors import ConfigError
from instruct_tune.evaluate.generate import Generator, _Callback
from tests import tiny
from tests.evaluate import tuned

PROMPTS = ["Say yes.", "Write a story about the little red dog and the big blue cat.", "Count.",
           "Name three colors of the sun on a happy day, one two three."]


def plain_greedy(model, prompt: list[int], n: int, stop_ids: list[int], pad_id: int) -> list[int]:
    """Reference: one prompt at a time, no padding, plain transformers generate."""
    ids = torch.tensor([prompt])
    out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=n,
                         eos_token_id=stop_ids, pad_token_id=pad_id)
    new = out[0, len(prompt):].tolist()
    return new[:next((i for i, t in enumerate(new) if t in stop_ids), len(new))]


@pytest.mark.parametrize("arch,template", [("llama", "alpaca"), ("gpt2", "alpaca"), ("qwen2", "chatml")])
def test_batched_equals_one_at_a_time(model_dirs, arch, template):
    # gpt2's tokenizer has pad == eos: left padding with EOS must still be masked out.
    gen = Generator.load(model_dirs[arch], template=template)
    prompts = gen.encode_many([[Message("user", p)] for p in PROMPTS])
    assert len({len(p) for p in prompts}) == len(prompts)  # really different lengths: padding
    outs = gen.generate(prompts, max_new_tokens=12, batch_size=3)
    for p, out in zip(prompts, outs, strict=True):
        assert out.token_ids == plain_greedy(gen.model, p, 12, gen.stop_ids, gen.pad_id)
        assert not out.stopped and out.length == 12  # random weights: runs to the limit


def test_tuned_model_stops_and_stop_token_is_cut(tuned_dir):
    gen = Generator.load(tuned_dir)
    outs = gen.generate(gen.encode_many([r.prompt_messages() for r in tuned.RECORDS]),
                        max_new_tokens=16, batch_size=2)
    assert [o.text for o in outs] == [r.output for r in tuned.RECORDS]
    assert all(o.stopped for o in outs)
    assert not any(set(o.token_ids) & set(gen.stop_ids) for o in outs)
    assert gen.tokenizer.eos_token not in "".join(o.raw for o in outs)


def test_progress_names_which_model_is_generating(capsys):
    """A before/after eval of runs/sft/final and runs/dpo/final: the lines tell them apart."""
    tok = tiny.build_tokenizer("chatml")
    model = tiny.build_model("qwen2", len(tok))
    labels = []
    for name in ("runs/sft/final", "/abs/runs/dpo/final"):
        gen = Generator(model, tok, get_template("chatml"), name=name, device="cpu")
        gen.generate(gen.encode_many([[Message("user", "hi")]]), max_new_tokens=2, progress=True)
        labels.append({ln.split(":")[0] for ln in capsys.readouterr().err.splitlines()
                       if "generated" in ln})
    assert labels == [{"generating (sft/final)"}, {"generating (dpo/final)"}]


def test_raw_keeps_special_tokens_for_leak_detection():
    tok = tiny.build_tokenizer("chatml")
    model = tiny.build_model("qwen2", len(tok))
    gen = Generator(model, tok, get_template("chatml"), device="cpu")
    ids = tok("hi", add_special_tokens=False)["input_ids"] + tok.convert_tokens_to_ids(["<|im_start|>"])
    out = gen._finish(ids + [tok.convert_tokens_to_ids("<|im_end|>"), 5, 6])
    assert out.stopped and out.token_ids == ids
    assert "<|im_start|>" in out.raw and "<|im_start|>" not in out.text


def test_context_limit_caps_new_tokens_and_rejects_long_prompts(model_dirs, capsys):
    gen = Generator.load(model_dirs["gpt2"], template="alpaca")  # learned positions: overflow crashes
    prompt = gen.encode([Message("user", "Say yes.")])
    gen.context = len(prompt) + 5
    assert gen.generate([prompt], max_new_tokens=50)[0].length == 5
    assert "1 prompt left room for fewer than 50" in capsys.readouterr().err
    gen.context = len(prompt)
    with pytest.raises(ConfigError, match="context"):
        gen.generate([prompt], max_new_tokens=5)


def test_tiny_top_p_sampling_is_greedy(model_dirs):
    gen = Generator.load(model_dirs["llama"], template="alpaca")
    prompts = gen.encode_many([[Message("user", p)] for p in PROMPTS[:2]])
    greedy = gen.generate(prompts, max_new_tokens=8)
    torch.manual_seed(0)
    nucleus = gen.generate(prompts, max_new_tokens=8, temperature=0.7, top_p=1e-6)
    assert [g.token_ids for g in greedy] == [n.token_ids for n in nucleus]
    torch.manual_seed(0)
    hot = gen.generate(prompts, max_new_tokens=8, temperature=5.0)
    assert [g.token_ids for g in greedy] != [h.token_ids for h in hot]


def test_stream_deltas_add_up_to_the_answer(tuned_dir):
    gen = Generator.load(tuned_dir)
    pieces: list[str] = []
    out = gen.stream(gen.encode(tuned.RECORDS[1].prompt_messages()), pieces.append, max_new_tokens=16)
    assert out.stopped and "".join(pieces) == out.text == "one two three"


def test_callback_waits_for_whole_characters_and_skips_stop():
    tok = tiny.build_tokenizer("llama")
    text = "the dog ☃ and the cat é"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    pieces: list[str] = []
    cb = _Callback(tok, {tok.eos_token_id}, pieces.append)
    cb.put(torch.tensor([[1, 2, 3]]))  # the prompt: ignored
    for t in ids + [tok.eos_token_id, 42]:
        cb.put(torch.tensor([t]))
    cb.end()
    assert "".join(pieces) == text
    assert not any("\ufffd" in p for p in pieces)


def test_missing_template_falls_back_to_alpaca_with_warning(model_dirs, capsys):
    gen = Generator.load(model_dirs["llama"])  # conftest's dirs have no template.json
    assert gen.template.name == "alpaca"
    assert "no template.json" in capsys.readouterr().err
    assert Generator.load(model_dirs["qwen2"], template="chatml").template.name == "chatml"


def test_progress_prints_plain_lines_when_not_a_terminal(capsys):
    """No terminal (logs, CI): about one line per 10% of rows, never silent, never per row."""
    from instruct_tune.evaluate.generate import _progress

    with _progress(True, 238, "generating (m)") as advance:
        for start in range(0, 238, 8):
            advance(min(8, 238 - start))
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "generated" in ln]
    assert 8 <= len(lines) <= 11
    assert "generated 238/238 rows (100%)" in lines[-1]
    with _progress(False, 238, "x") as advance:
        advance(238)
    assert capsys.readouterr().err == ""
