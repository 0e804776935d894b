"""loss_sum: same loss and gradients as Hugging Face's own loss, bounded logits memory, and the
wrappers (peft, DDP) and logit transforms it must see through."""

from __future__ import annotations

import gc
import random
from dataclasses import dataclass

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from instruct_tune.data.pack import IGNORE, collate, packed_rows
from instruct_tune.train.loss import head_cross_entropy, loss_sum, unwrap
from tests.tiny import build_model

VOCAB = 97


@dataclass
class Ex:
    input_ids: list[int]
    labels: list[int]


def examples(specs: list[tuple[int, int]], seed: int = 0) -> list[Ex]:
    """(prompt_len, response_len) -> examples with the prompt unlabelled."""
    rng = random.Random(seed)
    out = []
    for p, r in specs:
        ids = [rng.randrange(1, VOCAB) for _ in range(p + r)]
        out.append(Ex(ids, [IGNORE] * p + ids[p:]))
    return out


SPECS = [(7, 5), (3, 12), (20, 4), (1, 1), (9, 9)]


def hf_loss_sum(model, batch):
    out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                labels=batch.labels)
    return out.loss * batch.num_trained


def grads(model, loss):
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("chunk", [None, 3])
@pytest.mark.parametrize("arch", ["llama", "qwen2", "gpt2"])
def test_matches_hf_loss_and_gradients(arch, chunk):
    model = build_model(arch, VOCAB)  # eval: GPT-2 has dropout; grads still flow
    batch = collate(examples(SPECS), 0, max_length=64)
    ours, n = loss_sum(model, batch, chunk_size=chunk)
    assert n == batch.num_trained == sum(r for _, r in SPECS) - sum(p == 0 for p, _ in SPECS)
    ref = hf_loss_sum(model, batch)
    assert abs(ours.item() - ref.item()) <= 1e-5 * abs(ref.item())
    g_ours, g_ref = grads(model, ours), grads(model, ref)
    assert g_ours.keys() == g_ref.keys() and len(g_ours) == len(list(model.parameters()))
    for name, g in g_ref.items():
        assert torch.allclose(g_ours[name], g, rtol=1e-4, atol=1e-6), name


def test_packed_gradients_match_padded():
    model = build_model("llama", VOCAB)
    exs = examples(SPECS)
    gp = grads(model, loss_sum(model, collate(exs, 0, max_length=32, rows=packed_rows(exs, 32)))[0])
    gu = grads(model, loss_sum(model, collate(exs, 0, max_length=32))[0])
    for name, g in gu.items():
        assert torch.allclose(gp[name], g, rtol=1e-4, atol=1e-6), name


def test_gradient_checkpointing_with_packed_rows():
    """Activation checkpointing recomputes the forward inside the backward: it must take the
    same (per-example) attention path, or torch raises and gradients would differ."""
    model = build_model("qwen2", VOCAB)
    batch = collate(examples(SPECS), 0, max_length=32, rows=packed_rows(examples(SPECS), 32))
    ref = grads(model, loss_sum(model, batch)[0])
    model.gradient_checkpointing_enable()
    model.train()
    got = grads(model, loss_sum(model, batch)[0])
    for name, g in ref.items():
        assert torch.allclose(got[name], g, rtol=1e-4, atol=1e-6), name


def test_no_labelled_tokens_gives_zero_and_backward_works():
    model = build_model("llama", VOCAB)
    batch = collate(examples([(5, 0), (3, 0)]), 0, max_length=16)
    loss, n = loss_sum(model, batch)
    assert n == 0 and loss.item() == 0.0
    loss.backward()


class _RecordVocabTensors(TorchDispatchMode):
    """Largest number of elements of any tensor whose last dim is the vocab size, over every op
    run (forward and backward): a deterministic stand-in for peak logits memory."""

    def __init__(self, vocab: int):
        super().__init__()
        self.vocab, self.largest = vocab, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.is_view:  # e.g. weight.t(): no new memory
            return out
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor) and t.ndim >= 2 and t.shape[-1] == self.vocab:
                self.largest = max(self.largest, t.numel())
        return out


def _largest_logits(model, batch, fn) -> int:
    rec = _RecordVocabTensors(VOCAB_BIG)
    with rec:
        loss = fn(model, batch)
        loss.backward()
    return rec.largest


VOCAB_BIG = 1031  # distinct from every hidden/intermediate size


def test_logits_memory_does_not_grow_with_prompt_tokens():
    model = build_model("llama", VOCAB_BIG)
    ours = lambda m, b: loss_sum(m, b, chunk_size=16)[0]  # noqa: E731
    sizes, hf_sizes = [], []
    for prompt in (4, 200):
        batch = collate(examples([(prompt, 40), (prompt, 40)]), 0, max_length=256)
        sizes.append(_largest_logits(model, batch, ours))
        hf_sizes.append(_largest_logits(model, batch, hf_loss_sum))
    # Ours: one chunk of logits at most, whatever the prompt length (80 labelled rows here).
    assert sizes[0] == sizes[1] <= 16 * VOCAB_BIG
    # The probe sees the plain forward's [batch x tokens x vocab] logits grow with the prompt.
    assert hf_sizes[1] > hf_sizes[0] >= 2 * 44 * VOCAB_BIG


def test_chunking_is_exact_and_bf16_is_close():
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 50, bias=True)
    hidden = torch.randn(37, 16, requires_grad=True)
    targets = torch.randint(0, 50, (37,))
    ref = torch.nn.functional.cross_entropy(head(hidden), targets, reduction="sum")
    g_ref = torch.autograd.grad(ref, [hidden, head.weight, head.bias])
    ours = head_cross_entropy(hidden, head, targets, chunk_size=5)
    g = torch.autograd.grad(ours * 2.0, [hidden, head.weight, head.bias])  # upstream grad 2
    assert abs(ours.item() - ref.item()) < 1e-4
    for a, b in zip(g, g_ref, strict=True):
        assert torch.allclose(a, 2 * b, atol=1e-5)
    h16, head16 = hidden.detach().bfloat16().requires_grad_(), head.bfloat16()
    l16 = head_cross_entropy(h16, head16, targets, chunk_size=5)
    (gh,) = torch.autograd.grad(l16, [h16])
    assert gh.dtype == torch.bfloat16 and head16.weight.grad is None
    assert abs(l16.item() - ref.item()) < 0.02 * abs(ref.item())


def test_autocast_bf16_close_to_hf():
    model = build_model("llama", VOCAB)
    batch = collate(examples(SPECS), 0, max_length=32, rows=packed_rows(examples(SPECS), 32))
    padded = collate(examples(SPECS), 0, max_length=32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours, _ = loss_sum(model, batch)
        ref = hf_loss_sum(model, padded)
    g_ours, g_ref = grads(model, ours), grads(model, ref)
    assert abs(ours.item() - ref.item()) < 0.01 * abs(ref.item())
    for name, g in g_ref.items():
        assert g_ours[name].dtype == torch.float32
        assert (g_ours[name] - g).norm() <= 0.05 * g.norm() + 1e-6, name


def test_softcapped_and_scaled_logits_match_hf():
    from transformers import CohereConfig, CohereForCausalLM, Gemma2Config, Gemma2ForCausalLM

    torch.manual_seed(0)
    small = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                 num_attention_heads=4, num_key_value_heads=2, head_dim=8)
    models = [Gemma2ForCausalLM(Gemma2Config(**small, final_logit_softcapping=0.5)),
              CohereForCausalLM(CohereConfig(**small, logit_scale=0.25))]
    batch = collate(examples(SPECS), 0, max_length=64)
    for model in models:
        ours, _ = loss_sum(model.float(), batch)
        ref = hf_loss_sum(model, batch)
        assert abs(ours.item() - ref.item()) <= 1e-4 * abs(ref.item()), type(model).__name__


def test_unknown_logit_transform_falls_back_to_full_forward(caplog):
    model = build_model("llama", VOCAB)
    forward = model.forward

    def doubled(*args, **kwargs):  # a model whose logits are not just lm_head(hidden)
        out = forward(*args, **kwargs)
        out.logits = out.logits * 2
        return out

    model.forward = doubled
    batch = collate(examples(SPECS), 0, max_length=64)
    ours, _ = loss_sum(model, batch)
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    ref = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, VOCAB),
                                            batch.labels[:, 1:].reshape(-1), reduction="sum")
    assert abs(ours.item() - ref.item()) <= 1e-5 * abs(ref.item())
    assert "full-logits loss" in caplog.text


def test_peft_wrapped_model():
    from peft import LoraConfig, get_peft_model

    base = build_model("llama", VOCAB)
    batch = collate(examples(SPECS), 0, max_length=32, rows=packed_rows(examples(SPECS), 32))
    before, _ = loss_sum(base, batch)
    model = get_peft_model(base, LoraConfig(r=4, target_modules="all-linear", lora_dropout=0.0))
    assert unwrap(model) is base
    loss, _ = loss_sum(model, batch)
    assert abs(loss.item() - before.item()) < 1e-5  # LoRA B starts at zero
    loss.backward()
    lora_grads = [p.grad for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_grads and all(g is not None and g.abs().sum() > 0 for g in lora_grads)
    assert base.get_output_embeddings().weight.grad is None  # frozen head: no [V, H] grad kept


def test_peft_lora_on_the_output_head():
    """A LoRA-wrapped lm_head is not a plain Linear: the generic (recomputing) chunk path."""
    from peft import LoraConfig, get_peft_model

    base = build_model("llama", VOCAB)
    batch = collate(examples(SPECS), 0, max_length=64)
    model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "lm_head"],
                                            lora_dropout=0.0, init_lora_weights=False))
    ours, _ = loss_sum(model, batch, chunk_size=4)
    ref = hf_loss_sum(model, batch)
    assert abs(ours.item() - ref.item()) <= 1e-5 * abs(ref.item())
    g_ours, g_ref = grads(model, ours), grads(model, ref)
    assert any("lm_head.lora" in n for n in g_ref)
    for name, g in g_ref.items():
        assert torch.allclose(g_ours[name], g, rtol=1e-4, atol=1e-6), name


def test_ddp_wrapped_model_syncs(tmp_path):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    ddp = None
    try:
        model = build_model("gpt2", VOCAB)
        batch = collate(examples(SPECS), 0, max_length=64)
        ref = grads(model, hf_loss_sum(model, batch))
        ddp = DDP(model)
        for _ in range(2):  # a second step errors if the reducer did not finish the first
            got = grads(model, loss_sum(ddp, batch)[0])
        for name, g in ref.items():
            assert torch.allclose(got[name], g, rtol=1e-4, atol=1e-6), name
    finally:
        # Free DDP's reducer (it holds the gloo group) before the group goes: freed after it, at
        # the test's return, the group's destructor hung joining its worker thread (seen once).
        del ddp
        gc.collect()
        dist.destroy_process_group()
