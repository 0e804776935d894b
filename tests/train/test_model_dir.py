"""One writer for the model-directory format (train/model_dir.py): final/, every checkpoint and
an export of either hold the same files, so `export DIR/final` reproduces final/ exactly."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import instruct_tune
from instruct_tune.data.templates import Template
from instruct_tune.data.tokenize import stop_token_ids
from instruct_tune.models import load_tokenizer
from instruct_tune.outdir import MARKER
from instruct_tune.serve.export import export
from instruct_tune.train import model_dir
from instruct_tune.train.checkpoint import list_checkpoints
from instruct_tune.train.run import train
from tests.train.conftest import load_weights

WEIGHTS = (".safetensors",)


def _files(d: Path) -> dict[str, Path]:
    """Every file below `d` by relative path, less the export's marker."""
    return {str(p.relative_to(d)): p for p in sorted(d.rglob("*"))
            if p.is_file() and p.name != MARKER}


def assert_same_model_dir(a: Path, b: Path) -> None:
    """Same file set; non-weight files byte-identical; weights equal tensor for tensor."""
    fa, fb = _files(a), _files(b)
    assert fa.keys() == fb.keys()
    for name, path in fa.items():
        if name.endswith(WEIGHTS):
            wa, wb = load_weights(path.parent), load_weights(fb[name].parent)
            assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), name
        else:
            assert path.read_bytes() == fb[name].read_bytes(), name


@pytest.fixture(scope="module")
def runs(tmp_path_factory, model_dirs, alpaca_file):
    """Finished two-step runs: llama alpaca (full and LoRA), gpt2 (pad == eos, no BOS, tied
    embeddings) and llama chatml (the template adds <|im_start|>/<|im_end|>: the stop token is
    not EOS, and LoRA writes a resized final/base)."""
    from instruct_tune.config import TrainConfig

    root = tmp_path_factory.mktemp("model_dir")
    common = dict(data=str(alpaca_file), cache_dir="none", quiet=True, batch_size=4,
                  max_steps=2, save_every=2, lr=1e-2, seed=0)
    variants = {"full": {}, "lora": {"lora": True}, "gpt2-full": {"arch": "gpt2"},
                "chatml-full": {"template": "chatml"},
                "chatml-lora": {"template": "chatml", "lora": True, "lora_r": 4}}
    return {name: train(TrainConfig(out=str(root / name), **common,
                                    model=str(model_dirs[kw.pop("arch", "llama")]), **kw))
            for name, kw in variants.items()}


@pytest.mark.parametrize("run", ["full", "gpt2-full", "chatml-full"])
def test_export_of_final_is_final(runs, tmp_path, run):
    final = runs[run]
    out = export(final, tmp_path / "out")
    assert_same_model_dir(final, out)
    # What the shared writer puts there: every stop id first among the eos ids.
    tokenizer = load_tokenizer(final)
    stops = stop_token_ids(tokenizer, Template.load(final))
    eos = json.loads((out / "generation_config.json").read_text())["eos_token_id"]
    assert eos[:len(stops)] == stops and len(eos) == len(set(eos))
    if run == "chatml-full":
        assert tokenizer.convert_tokens_to_ids("<|im_end|>") in stops


def _top_level_copy(src: Path, dest: Path) -> Path:
    """src's files (not its subdirectories), less the base_model lines of peft's model card
    (README.md): the card names the base model's own _name_or_path, which for a resized LoRA is
    the original base when final/ is saved and final/base once loaded. adapter_config.json,
    which loading reads, names final/base in both."""
    dest.mkdir()
    for p in src.iterdir():
        if p.is_file():
            data = p.read_bytes()
            if p.name == "README.md":
                data = b"".join(x for x in data.splitlines(keepends=True)
                                if b"base_model:" not in x)
            (dest / p.name).write_bytes(data)
    return dest


@pytest.mark.parametrize("run", ["lora", "chatml-lora"])
def test_unmerged_export_of_a_lora_final_is_final(runs, tmp_path, run):
    final = runs[run]
    out = export(final, tmp_path / "out", merge=False)
    # The same settings (compared as JSON, so a differing key is named when it fails).
    exported, trained = (json.loads((d / "adapter_config.json").read_text()) for d in (out, final))
    assert exported == trained, {k: (exported.get(k), trained.get(k))
                                 for k in exported.keys() | trained.keys()
                                 if exported.get(k) != trained.get(k)}
    assert_same_model_dir(_top_level_copy(final, tmp_path / "a"),  # final/base/ is not exported
                          _top_level_copy(out, tmp_path / "b"))


def test_merged_export_holds_final_non_weight_files(runs, tmp_path):
    final = runs["chatml-lora"]
    out = export(final, tmp_path / "out")
    for name in ("template.json", "generation_config.json", "chat_template.jinja",
                 "tokenizer.json", "tokenizer_config.json"):
        assert (out / name).read_bytes() == (final / name).read_bytes(), name


def test_checkpoint_holds_final_non_weight_files(runs):
    final = runs["chatml-full"]
    (_, last), = list_checkpoints(final.parent)
    for name, path in _files(final).items():
        if not name.endswith(WEIGHTS):
            assert (last / name).read_bytes() == path.read_bytes(), name


def _our_caller() -> Path:
    """The innermost instruct_tune source file on the call stack (past library code)."""
    package = Path(instruct_tune.__file__).parent
    return next(p for f in inspect.stack()[2:]
                if (p := Path(f.filename).resolve()).is_relative_to(package))


def test_the_writer_is_the_only_place_writing_the_format(make_cfg, tmp_path, monkeypatch):
    """What final/, every checkpoint and an export hold as template.json and
    generation_config.json was written last by train/model_dir.py (the model's own
    save_pretrained writes a generation_config.json first, which the writer replaces)."""
    from transformers import GenerationConfig

    last: dict[tuple[str, Path], Path] = {}  # (file, directory) -> who wrote it last

    def spy(name: str, real):
        def wrapper(self, path, *a, **kw):
            last[name, Path(path).resolve()] = _our_caller()
            return real(self, path, *a, **kw)
        return wrapper

    monkeypatch.setattr(Template, "save", spy("template.json", Template.save))
    monkeypatch.setattr(GenerationConfig, "save_pretrained",
                        spy("generation_config.json", GenerationConfig.save_pretrained))
    run = tmp_path / "run"
    final = train(make_cfg(out=run, max_steps=2, save_every=1))
    export(final, tmp_path / "out")

    writer = Path(model_dir.__file__).resolve()
    assert set(last.values()) == {writer}, last
    # Each directory is written in its staging directory, then moved into place.
    staged = {run / ".tmp-final", run / "checkpoints" / ".tmp-step-1",
              run / "checkpoints" / ".tmp-step-2"}
    exported = {d for _, d in last if d.parent == tmp_path and d.name.startswith(".out.")}
    assert len(exported) == 1
    for name in ("template.json", "generation_config.json"):
        assert {d for n, d in last if n == name} == staged | exported, name
    for d in (final, *(p for _, p in list_checkpoints(run)), tmp_path / "out"):
        assert (d / "template.json").is_file() and (d / "generation_config.json").is_file(), d


@settings(max_examples=30, deadline=None)
@given(names=st.lists(st.sampled_from(["q_proj", "k_proj", "v_proj", "o_proj", "up_proj",
                                       "model.layers.0.mlp.down_proj"]), min_size=1, unique=True),
       seed=st.randoms())
def test_adapter_targets_are_written_in_one_order(tmp_path_factory, names, seed):
    """peft keeps target_modules as a set, so the saved list followed the process's hash seed:
    whatever order they come in, the file is the same bytes, with the same modules."""
    shuffled = names[:]
    seed.shuffle(shuffled)
    written = []
    for order in (names, shuffled):
        d = tmp_path_factory.mktemp("adapter")
        (d / "adapter_config.json").write_text(json.dumps({"r": 8, "target_modules": order}))
        model_dir.sort_adapter_targets(d)
        written.append((d / "adapter_config.json").read_bytes())
    assert written[0] == written[1]
    assert set(json.loads(written[0])["target_modules"]) == set(names)
