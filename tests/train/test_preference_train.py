"""Preference tuning through the real loop (train --method ...): step-0 loss is exactly log 2 when
the policy is its reference (padding, packing, pad == eos, accumulation, 2 processes: a padding,
boundary or dropout leak shows up here first); 4x1 = 2x2 = 1x4 accumulation and packing give the
same weights; stop-token-only and empty answers never give NaN; LoRA's reference is the model with
its adapters disabled and its final/ is a loadable adapter."""

from __future__ import annotations

import json
import math
import random
from contextlib import nullcontext
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from instruct_tune.config import PreferenceLossConfig
from instruct_tune.data.pair_tokenize import PairExample, build_pairs
from instruct_tune.data.pairs import load_pairs
from instruct_tune.train.objective import Preference
from instruct_tune.train.reference import reference_logps
from instruct_tune.train.run import train
from tests.tiny import WORDS, build_model
from tests.train.conftest import load_weights, max_abs_diff, metrics, train_two_processes
from tests.train.test_prefix_sharing import separate

LOG2 = math.log(2)


def write_pairs(path: Path, n: int, seed: int = 0, max_words: int = 30,
                answer_words: int = 12) -> Path:
    """n standard pairs; prompt and answer lengths vary a lot, so batches are padded."""
    rng = random.Random(seed)

    def text(k: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, k)))

    with path.open("w") as f:
        for _ in range(n):
            chosen = text(answer_words)
            rejected = text(answer_words)
            while rejected == chosen:
                rejected = text(answer_words)
            f.write(json.dumps({"prompt": text(max_words), "chosen": chosen,
                                "rejected": rejected}) + "\n")
    return path


@pytest.fixture(scope="session")
def pairs_file(tmp_path_factory) -> Path:
    return write_pairs(tmp_path_factory.mktemp("pairs") / "pairs.jsonl", 16)


@pytest.fixture
def pref_cfg(make_cfg, pairs_file):
    """make_cfg with the pair file and --method dpo unless told otherwise."""
    def build(arch: str = "llama", **kw):
        return make_cfg(arch, **{"data": str(pairs_file), "method": "dpo", "save_every": 0, **kw})
    return build


STEP0 = {
    "padded": ("llama", {}),
    "packed": ("llama", {"packing": True}),
    "pad-eos": ("gpt2", {}),  # pad == eos and dropout 0.1 in the config
    "pad-eos-packed": ("gpt2", {"packing": True}),
    "accum": ("llama", {"batch_size": 2, "grad_accum": 2}),
    "chatml-accum-packed": ("qwen2", {"batch_size": 1, "grad_accum": 3, "packing": True}),
}


@pytest.mark.parametrize("name", STEP0)
def test_step0_loss_is_log2(pref_cfg, tmp_path, name):
    """metrics.jsonl's step 1 loss is computed before the first update: policy == reference."""
    arch, kw = STEP0[name]
    out = train(pref_cfg(arch, out=tmp_path / "run", max_steps=1, **kw)).parent
    first = metrics(out)[0]
    assert first["step"] == 1 and abs(first["loss"] - LOG2) <= 1e-6, first["loss"] - LOG2
    assert abs(first["rewards/margins"]) <= 1e-5


def test_step0_loss_is_log2_on_two_processes(pref_cfg, tmp_path):
    cfg = pref_cfg(out=tmp_path / "ddp", max_steps=1)
    train_two_processes(cfg, "--method", "dpo", "--save-every", "0")
    first = metrics(cfg.out)[0]
    assert first["step"] == 1 and first["trained_pairs"] == 4  # 2 pairs x 2 processes
    assert abs(first["loss"] - LOG2) <= 1e-6, first["loss"] - LOG2


@pytest.mark.parametrize("method", ["dpo", "orpo"])
def test_accumulation_and_packing_give_the_same_weights(pref_cfg, model_dirs, tmp_path, method):
    """4 x 1 = 2 x 2 = 1 x 4 (pairs per micro-batch x micro-batches), packed or not: the same
    per-step losses and final weights. (At lr 1e-2 DPO's first AdamW step turns float noise in
    the near-cancelled lm_head gradients of unused tokens, ~1e-9, into ~3e-5 of weight.)"""
    finals, losses = {}, {}
    for packing in (False, True):
        for b in (4, 2, 1):
            out = tmp_path / f"{b}x{4 // b}{'-packed' if packing else ''}"
            finals[out.name] = load_weights(train(pref_cfg(
                out=out, method=method, packing=packing, batch_size=b, grad_accum=4 // b,
                max_steps=3)))
            losses[out.name] = np.array([r["loss"] for r in metrics(out)])
    first, first_losses = finals.pop("4x1"), losses.pop("4x1")
    diffs = {name: max_abs_diff(first, w) for name, w in finals.items()}
    assert max(diffs.values()) <= 1e-5, diffs
    assert max(np.abs(first_losses - x).max() for x in losses.values()) <= 1e-6, losses
    assert max_abs_diff(first, load_weights(model_dirs["llama"])) > 1e-4  # it did train


@pytest.mark.parametrize("method", ["ipo", "simpo", "orpo"])
def test_one_word_answers_train_without_nan(pref_cfg, tmp_path, method):
    """Answers of one word + the stop token, a high lr: every logged value stays finite."""
    data = write_pairs(tmp_path / "short.jsonl", 8, seed=3, answer_words=1)
    out = train(pref_cfg(out=tmp_path / "run", data=str(data), method=method, max_steps=6,
                         lr=5e-2)).parent
    for record in metrics(out):
        assert all(math.isfinite(v) for v in record.values() if isinstance(v, float)), record


@pytest.mark.parametrize("method", ["ipo", "simpo", "orpo"])
def test_stop_only_and_empty_answers_give_finite_loss_and_grads(method):
    """A stop-token-only answer the model is certain of (log p == 0.0 exactly in float32: ORPO's
    odds are infinite there) and empty answers (a fully truncated answer: IPO and SimPO divide
    by the token count) give a finite loss, finite metrics and finite gradients."""
    vocab, prompt = 64, [5, 6, 7]
    model = build_model("llama", vocab).train()
    with torch.no_grad():
        model.lm_head.weight.mul_(1e4)  # saturate the softmax
        stop = int(model(torch.tensor([prompt])).logits[0, -1].argmax())
    other = (stop + 1) % vocab
    pairs = [PairExample(prompt, [stop], [other], None), PairExample(prompt, [], [stop], None),
             PairExample(prompt, [stop], [], None), PairExample(prompt, [stop], [stop], None)]
    objective = Preference(PreferenceLossConfig(method=method), [(-1.0, -2.0)] * len(pairs))
    batch = objective.collate(pairs, 0, max_length=64, indices=list(range(len(pairs))))
    loss, sums = objective.loss(model, batch)
    with torch.no_grad():
        assert float(separate(model, prompt, [stop])) == 0.0  # saturated, as intended
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(sums).all(), (loss, sums)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def tokenized_pairs(path: Path, model_dir: Path) -> list[PairExample]:
    """The pairs as train tokenizes them for a model without a saved template (alpaca)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    return build_pairs(load_pairs(path).records, tok, "alpaca", max_length=512,
                       cache_dir="none").examples


def test_lora_dpo_reference_is_the_base_model(pref_cfg, model_dirs, pairs_file, tmp_path):
    from transformers import AutoModelForCausalLM

    final = train(pref_cfg(out=tmp_path / "lora", lora=True, lora_r=4, lr=2e-2, max_steps=4,
                           cache_dir=str(tmp_path / "cache")))
    first = metrics(final.parent)[0]
    assert abs(first["loss"] - LOG2) <= 1e-6, first["loss"] - LOG2
    # final/ is an adapter that plain transformers loads, and it changed the model
    assert (final / "adapter_config.json").is_file() and not (final / "model.safetensors").exists()
    ids = torch.tensor([[1, 5, 9, 13, 17, 21]])
    with torch.no_grad():
        tuned = AutoModelForCausalLM.from_pretrained(final).eval()(ids).logits
        base = AutoModelForCausalLM.from_pretrained(model_dirs["llama"]).eval()
        assert (tuned - base(ids).logits).abs().max() > 1e-3
        # the reference log-probs the run used (its cache) are the base model's own
        (cached,) = (tmp_path / "cache").rglob("reference/*.npy")
        want = [[float(separate(base, p.prompt_ids, a)) for a in (p.chosen_ids, p.rejected_ids)]
                for p in tokenized_pairs(pairs_file, model_dirs["llama"])]
    # float32 sums of ~70 nats: a few ulp (7.6e-6 each) apart
    np.testing.assert_allclose(np.load(cached), want, rtol=1e-6, atol=1e-6)


def test_lora_reference_pass_disables_the_adapters(model_dirs, pairs_file):
    """With trained (non-zero) adapters the reference pass still returns the base model's
    log-probs; without lora=True it would return the adapted model's."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(model_dirs["llama"]).eval()
    pairs = tokenized_pairs(pairs_file, model_dirs["llama"])[:6]
    with torch.no_grad():
        want = np.array([[float(separate(base, p.prompt_ids, a))
                          for a in (p.chosen_ids, p.rejected_ids)] for p in pairs])
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dirs["llama"]),
                           LoraConfig(r=4, target_modules="all-linear", lora_dropout=0.0))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5, generator=torch.Generator().manual_seed(0))
    acc = SimpleNamespace(num_processes=1, process_index=0, device=torch.device("cpu"),
                          is_main_process=True, autocast=nullcontext)

    def ref(lora: bool) -> np.ndarray:
        return np.array(reference_logps(model, pairs, acc, pad_id=0, batch_size=4,
                                        max_length=512, lora=lora, cache_file=None,
                                        say=lambda _: None))

    np.testing.assert_allclose(ref(True), want, rtol=1e-6, atol=1e-6)
    assert np.abs(ref(False) - want).max() > 1e-2  # the adapters do change the log-probs
