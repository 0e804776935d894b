"""Prefix sharing is the separate forward, to the digit: each answer's summed log-prob read from a
prefix-shared batch (data/pair_batch.py: prompt + chosen + rejected in one segment, one pair per
row or several packed per row) by loss.answer_logps equals the one computed from the model's own
logits on `prompt + that answer` alone (log_softmax, gather, sum). So do the gradients."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from instruct_tune.data.pair_batch import collate_pairs
from instruct_tune.data.pair_tokenize import PairExample
from instruct_tune.train.loss import answer_logps
from instruct_tune.train.objective import disable_dropout
from tests import tiny

VOCAB = 97
PAD = 0
KINDS = [("llama", "sdpa"), ("gpt2", "sdpa"), ("llama", "eager")]
_MODELS: dict = {}


def models(arch: str, attn: str):
    """(model answer_logps runs on, an untouched copy for the plain forward), built once."""
    if (arch, attn) not in _MODELS:
        model = tiny.build_model(arch, VOCAB, seed=1)
        model.set_attn_implementation(attn)
        _MODELS[arch, attn] = (model, copy.deepcopy(model))
    return _MODELS[arch, attn]


def separate(model, prompt: list[int], answer: list[int]) -> torch.Tensor:
    """sum_j log p(answer[j] | prompt + answer[:j]) from one plain forward of prompt + answer."""
    if not answer:
        return torch.zeros(())
    logits = model(torch.tensor([prompt + answer]), use_cache=False).logits[0].float()
    logp = torch.log_softmax(logits[len(prompt) - 1:-1], -1)
    return logp.gather(1, torch.tensor(answer)[:, None]).sum()


def ids(min_size: int, max_size: int):
    return st.lists(st.integers(1, VOCAB - 1), min_size=min_size, max_size=max_size)


@st.composite
def pair_batches(draw):
    """Pairs (answers may be empty: a fully truncated answer) and a layout: one pair per row, or
    pairs packed into rows in a random order."""
    pairs = [PairExample(draw(ids(1, 16)), draw(ids(0, 10)), draw(ids(0, 10)), None)
             for _ in range(draw(st.integers(1, 5)))]
    rows = None
    if draw(st.booleans()):
        order = draw(st.permutations(range(len(pairs))))
        cuts = sorted(draw(st.sets(st.integers(1, len(pairs) - 1))) if len(pairs) > 1 else [])
        rows = [list(order[a:b]) for a, b in zip([0, *cuts], [*cuts, len(pairs)], strict=True)]
    return pairs, rows, draw(st.sampled_from([1, 3, None]))


@pytest.mark.parametrize("arch,attn", KINDS)
@settings(max_examples=25, deadline=None)
@given(case=pair_batches())
def test_answer_logps_equal_separate_forwards(arch, attn, case):
    pairs, rows, chunk = case
    ours, plain = models(arch, attn)
    batch = collate_pairs(pairs, PAD, max_length=512, rows=rows)
    with torch.no_grad():
        got = answer_logps(ours, batch, chunk_size=chunk)
        order = [i for row in rows for i in row] if rows else range(len(pairs))
        want = torch.stack([separate(plain, pairs[i].prompt_ids, a)
                            for i in order for a in (pairs[i].chosen_ids, pairs[i].rejected_ids)])
    assert got.shape == want.shape
    assert (got - want).abs().max().item() <= 1e-4, (got - want).abs().max().item()


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_gradients_equal_separate_forwards(arch):
    """d/dθ of a weighted sum of the answers' log-probs, packed two pairs to a row (the layout
    training uses), equals the same from separate forwards."""
    gen = torch.Generator().manual_seed(3)

    def rand(n: int) -> list[int]:
        return torch.randint(1, VOCAB, (n,), generator=gen).tolist()

    pairs = [PairExample(rand(p), rand(c), rand(r), None)
             for p, c, r in ((7, 5, 3), (2, 1, 6), (11, 4, 4))]
    weights = torch.randn(6, generator=gen)
    ours = tiny.build_model(arch, VOCAB, seed=2).train()
    disable_dropout(ours)  # as preference training does (gpt2 has dropout 0.1)
    plain = copy.deepcopy(ours)
    batch = collate_pairs(pairs, PAD, max_length=512, rows=[[2, 0], [1]])
    (answer_logps(ours, batch, chunk_size=4) * weights).sum().backward()
    order = [2, 0, 1]
    sum(w * separate(plain, pairs[i].prompt_ids, a) for w, (i, a) in zip(
        weights, [(i, a) for i in order for a in (pairs[i].chosen_ids, pairs[i].rejected_ids)],
        strict=True)).backward()
    want = dict(plain.named_parameters())
    worst = max((p.grad - want[n].grad).abs().max().item() for n, p in ours.named_parameters())
    assert worst <= 1e-4, worst
