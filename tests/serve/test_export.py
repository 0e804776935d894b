"""export: plain transformers on OUT generates exactly what `instruct-tune generate` does on DIR."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from instruct_tune.cli import main
from instruct_tune.data.chat_template import chat_template_for, check_chat_template
from instruct_tune.data.templates import Template
from instruct_tune.evaluate.generate import Generator
from instruct_tune.serve.export import export
from tests.evaluate import tuned


def plain_generate(out_dir, messages: list[dict], n: int, **kwargs) -> tuple[list[int], str, int]:
    """What a user of the exported model writes: transformers only, no instruct_tune.
    Returns (prompt ids, response text, number of new tokens)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out_dir)
    model = AutoModelForCausalLM.from_pretrained(out_dir)
    enc = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                  return_dict=True)
    out = model.generate(**enc, max_new_tokens=n, do_sample=False, **kwargs)
    prompt_len = enc["input_ids"].shape[1]
    new = out[0, prompt_len:]
    return enc["input_ids"][0].tolist(), tok.decode(new, skip_special_tokens=True), len(new)


def cli_generate(model_dir, instruction: str, n: int, capsys, input: str = "") -> str:
    args = ["generate", "--model", str(model_dir), instruction, "--max-new-tokens", str(n)]
    assert main(args + (["--input", input] if input else [])) == 0
    out = capsys.readouterr().out
    assert out.endswith("\n")
    return out[:-1]


def messages(rec) -> list[dict]:
    m = {"role": "user", "content": rec.instruction}
    return [{**m, "input": rec.input} if rec.input else m]


def test_full_export_generates_like_instruct_tune(tuned_dir, tmp_path, capsys):
    out = export(tuned_dir, tmp_path / "out")
    assert "warning" not in capsys.readouterr().err  # the chat_template self-check passed
    assert (out / "model.safetensors").is_file() and (out / "template.json").is_file()
    gen = Generator.load(tuned_dir)
    for rec in tuned.RECORDS:
        ids, text, _ = plain_generate(out, messages(rec), 16)
        assert ids == gen.encode(rec.prompt_messages())
        assert text == cli_generate(tuned_dir, rec.instruction, 16, capsys, rec.input) == rec.output


def test_end_of_turn_token_other_than_eos_stops_plain_generate(chatml_dir, tmp_path, capsys):
    out = export(chatml_dir, tmp_path / "out")
    assert "warning" not in capsys.readouterr().err
    cfg = json.loads((out / "generation_config.json").read_text())
    gen = Generator.load(chatml_dir)
    im_end = gen.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert im_end in cfg["eos_token_id"] and gen.tokenizer.eos_token_id in cfg["eos_token_id"]
    rec = tuned.RECORDS[1]
    _, text, n = plain_generate(out, messages(rec), 16)
    assert text == cli_generate(chatml_dir, rec.instruction, 16, capsys) == rec.output
    assert n < 16
    # Control: stopping on the tokenizer's EOS alone, the model runs on to the token limit.
    *_, n = plain_generate(out, messages(rec), 16, eos_token_id=gen.tokenizer.eos_token_id)
    assert n == 16


def test_chat_template_renders_the_training_prompt(chatml_dir, tmp_path):
    from transformers import AutoTokenizer

    out = export(chatml_dir, tmp_path / "out")
    conversation = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Count."}]
    rendered = AutoTokenizer.from_pretrained(out).apply_chat_template(
        conversation, tokenize=False, add_generation_prompt=True)
    assert rendered == Template.load(out).render_prompt(conversation)


def test_self_check_catches_a_chat_template_that_prompts_differently(tuned_dir):
    gen = Generator.load(tuned_dir)
    tok = gen.tokenizer
    tok.chat_template = chat_template_for(tok, gen.template)
    assert check_chat_template(tok, gen.template) == []
    tok.chat_template = tok.chat_template.replace("### Response:", "### Answer:")
    assert len(check_chat_template(tok, gen.template)) >= 2
    tok.chat_template = gen.template.to_chat_template()  # without the BOS that training prompts start with
    assert any("same text" in p for p in check_chat_template(tok, gen.template))


def test_lora_export_merges_the_adapter(lora_dir, base_dir, tmp_path, capsys):
    out = export(lora_dir, tmp_path / "out")
    assert not (out / "adapter_config.json").exists()
    merged, base = load_file(out / "model.safetensors"), load_file(base_dir / "model.safetensors")
    name = next(k for k in base if k.endswith("self_attn.q_proj.weight"))
    assert not (merged[name] == base[name]).all()  # the adapter really changed the weights
    for rec in tuned.RECORDS[:3]:
        _, text, _ = plain_generate(out, messages(rec), 12)
        assert text == cli_generate(lora_dir, rec.instruction, 12, capsys)
        assert text != cli_generate(base_dir, rec.instruction, 12, capsys)


def test_lora_export_without_merge_keeps_the_adapter(lora_dir, tmp_path):
    out = tmp_path / "out"
    assert main(["export", str(lora_dir), "--to", str(out), "--no-merge"]) == 0
    assert (out / "adapter_model.safetensors").is_file() and (out / "template.json").is_file()
    assert (out / "generation_config.json").is_file()
    prompt = Generator.load(lora_dir).encode(tuned.RECORDS[0].prompt_messages())
    a = Generator.load(out).generate([prompt], max_new_tokens=8)[0]
    b = Generator.load(lora_dir).generate([prompt], max_new_tokens=8)[0]
    assert a.token_ids == b.token_ids


def test_overwrite_replaces_only_an_earlier_export(tuned_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["export", str(tuned_dir), "--to", str(out)]) == 0
    (out / "model.safetensors").write_bytes(b"stale")
    assert main(["export", str(tuned_dir), "--to", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["export", str(tuned_dir), "--to", str(out), "--overwrite"]) == 0
    assert (out / "model.safetensors").read_bytes() != b"stale"
    assert main(["export", str(tuned_dir), "--to", str(tuned_dir), "--overwrite"]) == 2
    assert (tuned_dir / "model.safetensors").is_file()
    mine = tmp_path / "mine"  # not an export: never replaced (tests/test_outdir.py: every case)
    mine.mkdir()
    (mine / "keep.txt").write_text("precious")
    assert main(["export", str(tuned_dir), "--to", str(mine), "--overwrite"]) == 2
    assert "did not write: keep.txt" in capsys.readouterr().err
    assert (mine / "keep.txt").read_text() == "precious"


@pytest.mark.parametrize("argv, words", [(["export", "--to", "x"], ["Required", "--model"]),
                                         (["export", "/nonexistent/dir", "--to", "x"], ["error:"])])
def test_bad_arguments_are_clear_errors(argv, words, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert all(w in err for w in words), err


def test_real_sentencepiece_model_exports_exact_prompt_ids(stories_dir, tmp_path, capsys):
    """stories260k: SentencePiece (Metaspace) tokenizer that adds BOS, the hard case for a
    chat_template (a literal BOS drops the dummy-prefix space)."""
    out = export(stories_dir, tmp_path / "out", template="alpaca")
    assert "warning" not in capsys.readouterr().err
    gen = Generator.load(stories_dir, template="alpaca")
    for rec in tuned.RECORDS:
        ids, text, _ = plain_generate(out, messages(rec), 10)
        assert ids == gen.encode(rec.prompt_messages())
        assert text == gen.generate([ids], max_new_tokens=10)[0].text


def test_exported_directory_is_readable_by_others(tuned_dir, tmp_path):
    import os
    import stat

    umask = os.umask(0o022)
    try:
        out = export(tuned_dir, tmp_path / "out")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o755  # not mkdtemp's 0700
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir() if p.is_file()}
    assert modes and set(modes.values()) == {0o644}, modes
