"""Every checkpoint is a model directory: generate, export and plain transformers load
checkpoints/step-N/ like final/. A run of K steps saves checkpoint K from the same weights as
final/, so the two must give the same logits and the same greedy text."""

from __future__ import annotations

import json

import pytest
import torch

from instruct_tune.cli import main
from instruct_tune.models import load_model
from instruct_tune.serve.export import export
from instruct_tune.train.checkpoint import list_checkpoints
from instruct_tune.train.run import train

IDS = ((1, 5, 9, 13, 17, 21),)


def _logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(torch.tensor(IDS)).logits


def _generate(model_dir, capsys) -> str:
    capsys.readouterr()
    code = main(["generate", "--model", str(model_dir), "name three colors",
                 "--max-new-tokens", "8"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "template.json" not in err  # the checkpoint's own template was used
    return out


@pytest.mark.parametrize("arch, lora", [("llama", False), ("gpt2", False), ("llama", True)],
                         ids=["llama-full", "gpt2-tied-full", "llama-lora"])
def test_checkpoint_loads_like_final(make_cfg, tmp_path, capsys, arch, lora):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    final = train(make_cfg(arch, out=tmp_path / "run", max_steps=2, save_every=1, lora=lora,
                           lr=1e-2))
    (_, first), (_, last) = list_checkpoints(final.parent)
    for name in ("template.json", "generation_config.json", "chat_template.jinja"):
        assert (last / name).read_text() == (final / name).read_text(), name

    want = _logits(load_model(final))
    assert torch.equal(_logits(load_model(last)), want)
    assert torch.equal(_logits(AutoModelForCausalLM.from_pretrained(last)), want)
    assert AutoTokenizer.from_pretrained(last).chat_template == \
        AutoTokenizer.from_pretrained(final).chat_template
    assert not torch.equal(_logits(load_model(first)), want)  # step 1 is its own model
    assert _generate(last, capsys) == _generate(final, capsys)

    exported = export(last, tmp_path / "exported")
    plain = AutoModelForCausalLM.from_pretrained(exported)
    assert torch.allclose(_logits(plain), want, atol=1e-5)


def test_checkpoint_with_added_tokens_loads_once_training_finished(make_cfg, tmp_path):
    """LoRA with tokens the template adds: the adapter needs the resized base, which training
    writes once, to final/base/; each checkpoint's adapter points there."""
    final = train(make_cfg("llama", out=tmp_path / "chatml", template="chatml", lora=True,
                           lora_r=4, lr=1e-2, max_steps=2, save_every=1))
    ckpt = list_checkpoints(final.parent)[-1][1]
    config = json.loads((ckpt / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str((final / "base").resolve())
    assert torch.equal(_logits(load_model(ckpt)), _logits(load_model(final)))


def test_checkpoint_is_resumable_and_usable_after_resume(make_cfg, tmp_path):
    """The extra files don't disturb --resume; a checkpoint written after a resume is usable."""
    kw = dict(max_steps=4, save_every=2, keep_checkpoints=5)
    train(make_cfg(out=tmp_path / "r", **{**kw, "max_steps": 2}))
    final = train(make_cfg(out=tmp_path / "r", resume=True, **kw))
    assert [s for s, _ in list_checkpoints(final.parent)] == [2, 4]
    last = list_checkpoints(final.parent)[-1][1]
    assert torch.equal(_logits(load_model(last)), _logits(load_model(final)))
