"""The local base model: a tokenizer that suits the trainer, a cache that is reused and keyed by
the spec, and a demo that refuses to clobber an output directory."""

from __future__ import annotations

from dataclasses import replace

import pytest

from instruct_tune.config import DemoConfig
from instruct_tune.demo import base_model as bm
from instruct_tune.demo import corpus, world
from instruct_tune.demo.run import demo
from instruct_tune.errors import ConfigError

MICRO = bm.BaseSpec(vocab_size=600, hidden=32, layers=1, heads=2, intermediate=64, seq_len=64,
                    docs=60, steps=3, batch_size=2)


def test_tokenizer_has_bos_and_distinct_eos_and_pad():
    tok = bm.train_tokenizer(list(corpus.documents(200)), 1024)
    ids = tok("the red dog")["input_ids"]
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
    assert len({tok.bos_token_id, tok.eos_token_id, tok.pad_token_id}) == 3
    for text in ("Paris", "APPLE PEAR", "the red dog", " 13"):
        assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
    # the task words are whole tokens (or nearly): the corpus taught the tokenizer its world
    pieces = [len(tok(" " + w, add_special_tokens=False)["input_ids"]) for w in world.NOUNS]
    assert sum(pieces) / len(pieces) < 1.5


def test_base_model_is_built_once_then_reused(tmp_path):
    path, cached = bm.build_base_model(MICRO, cache=tmp_path)
    assert not cached and (path / "model.safetensors").is_file() and (path / "tokenizer.json").is_file()
    again, cached = bm.build_base_model(MICRO, cache=tmp_path)
    assert cached and again == path
    other, cached = bm.build_base_model(replace(MICRO, steps=2), cache=tmp_path)
    assert not cached and other != path
    assert not list(tmp_path.glob(".*tmp"))  # no half-written model left behind


def test_base_model_loads_with_the_projects_loader(tmp_path):
    from instruct_tune.models import load_model, load_tokenizer

    path, _ = bm.build_base_model(MICRO, cache=tmp_path)
    model, tok = load_model(path), load_tokenizer(path)
    assert model.config.model_type == "llama"
    assert model.get_input_embeddings().weight.shape[0] == len(tok)


def test_demo_refuses_a_non_empty_out(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        demo(DemoConfig(out=str(out)))
    with pytest.raises(ConfigError, match="did not write: notes.txt"):
        demo(DemoConfig(out=str(out), overwrite=True))
    assert (out / "notes.txt").read_text() == "mine"
