"""LoRA: only the adapter trains and is checkpointed; final/ loads with plain transformers; resume
is exact; tokens a template adds are trained and saved so the adapter still loads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from instruct_tune.errors import ConfigError
from instruct_tune.models import load_model
from instruct_tune.train.checkpoint import list_checkpoints
from instruct_tune.train.run import train
from tests.train.conftest import load_weights, max_abs_diff


def _logits(model, ids=((1, 5, 9, 13, 17, 21),)) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(torch.tensor(ids)).logits


def test_lora_run_saves_a_loadable_adapter(make_cfg, model_dirs, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    final = train(make_cfg("qwen2", out=tmp_path / "lora", lora=True, lora_r=4, lr=1e-2,
                           max_steps=4, save_every=2))
    config = json.loads((final / "adapter_config.json").read_text())
    assert Path(config["base_model_name_or_path"]).is_absolute()
    assert Path(config["base_model_name_or_path"]) == model_dirs["qwen2"].resolve()
    assert (final / "adapter_model.safetensors").is_file() and not (final / "model.safetensors").exists()
    for name in ("template.json", "generation_config.json", "tokenizer_config.json"):
        assert (final / name).is_file()

    plain = AutoModelForCausalLM.from_pretrained(final)  # transformers' peft integration
    AutoTokenizer.from_pretrained(final)
    ours = load_model(final)
    base = load_model(model_dirs["qwen2"])
    assert torch.allclose(_logits(plain), _logits(ours), atol=1e-5)
    assert (_logits(plain) - _logits(base)).abs().max() > 1e-3  # the adapter changed the model

    # Checkpoints hold the adapter only, not a copy of the frozen base.
    ckpt = load_weights(list_checkpoints(final.parent)[-1][1])
    assert ckpt and all("lora_" in k for k in ckpt)


def test_lora_resume_is_exact(make_cfg, tmp_path):
    kw = dict(lora=True, lora_r=4, lora_dropout=0.1, lr=1e-2, max_steps=6, save_every=3,
              keep_checkpoints=5)
    full = train(make_cfg(out=tmp_path / "full", **kw))
    cut = tmp_path / "cut"
    shutil.copytree(full.parent, cut)
    shutil.rmtree(cut / "checkpoints" / "step-6")
    shutil.rmtree(cut / "final")
    resumed = train(make_cfg(out=cut, resume=True, **kw))
    assert max_abs_diff(load_weights(full), load_weights(resumed)) <= 1e-6


def test_template_tokens_are_added_trained_and_loadable(make_cfg, tmp_path):
    """chatml on a tokenizer without <|im_start|>/<|im_end|>: the tokens are added, embeddings
    resized, their rows trained (LoRA: peft trainable tokens) and final/ still loads."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    final = train(make_cfg("llama", out=tmp_path / "chatml-lora", template="chatml", lora=True,
                           lora_r=4, lr=1e-2, max_steps=3, save_every=0))
    tok = AutoTokenizer.from_pretrained(final)
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert im_end == len(tok) - 1 and tok.convert_tokens_to_ids("<|im_start|>") == len(tok) - 2
    assert im_end in GenerationConfig.from_pretrained(final).eos_token_id
    model = AutoModelForCausalLM.from_pretrained(final)
    assert _logits(model).shape[-1] == len(tok)
    deltas = {k: v for k, v in load_weights(final).items() if "trainable_tokens" in k}
    assert len(deltas) == 2  # input embeddings and the (untied) output head
    assert all(v.abs().max() > 0 for v in deltas.values())

    full = train(make_cfg("llama", out=tmp_path / "chatml-full", template="chatml", max_steps=1,
                          save_every=0))
    assert _logits(AutoModelForCausalLM.from_pretrained(full)).shape[-1] == len(tok)


@pytest.mark.parametrize("arch, targets, bad", [("llama", "q_proj,v_prj", "v_prj"),
                                                ("gpt2", "c_attn,c_projj", "c_projj")])
def test_a_misspelt_lora_target_is_refused_with_the_real_names(make_cfg, tmp_path, arch, targets,
                                                               bad):
    """peft alone trains only the names that match and drops the typo silently."""
    with pytest.raises(ConfigError, match=rf"'{bad}' matches no layer") as e:
        train(make_cfg(arch, out=tmp_path / "t", lora=True, lora_targets=targets, max_steps=1))
    assert targets.split(",")[0] in str(e.value) and "all-linear" in str(e.value)
