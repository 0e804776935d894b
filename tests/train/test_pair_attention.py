"""The fast paths of preference tuning equal the plain ones they replace:
- per-segment attention (train/pair_attention.py) == sdpa over the batch's exact [T x T] mask, on
  every real position, outputs and gradients, whatever the segments, packing, dropout-free;
- the fused linear head log-probs (loss._FusedLinearLogp) == the checkpointed generic head, values
  and gradients (hidden, weight, bias), fp32 and under bf16 autocast."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from instruct_tune.data.pair_batch import collate_pairs
from instruct_tune.data.pair_tokenize import PairExample
from instruct_tune.train.loss import head_logps
from instruct_tune.train.pair_attention import prefix_shared_sdpa

H, D = 2, 8


@st.composite
def layouts(draw):
    """Pairs of (prompt >= 1, chosen >= 0, rejected >= 0) tokens, one per row or packed."""
    sizes = draw(st.lists(st.tuples(st.integers(1, 12), st.integers(0, 9), st.integers(0, 9)),
                          min_size=1, max_size=5))
    pairs = [PairExample([1] * p, [2] * c, [3] * r, None) for p, c, r in sizes]
    rows = None
    if draw(st.booleans()) and len(pairs) > 1:
        cut = draw(st.integers(1, len(pairs) - 1))
        rows = [list(range(cut)), list(range(cut, len(pairs)))]
    return pairs, rows


def real_positions(batch) -> torch.Tensor:
    """[B, T] True on tokens of a pair (not padding)."""
    used = torch.tensor([sum(map(sum, row)) for row in batch.segments])
    return torch.arange(batch.input_ids.shape[1])[None] < used[:, None]


@settings(max_examples=60, deadline=None)
@given(case=layouts(), seed=st.integers(0, 2**16))
def test_per_segment_attention_equals_the_dense_mask(case, seed):
    pairs, rows = case
    batch = collate_pairs(pairs, 0, max_length=256, rows=rows)
    B, T = batch.input_ids.shape
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(B, H, T, D, generator=gen, requires_grad=True) for _ in range(3))
    real = real_positions(batch)
    weight = torch.randn(B, T, H, D, generator=gen) * real[:, :, None, None]

    want = F.scaled_dot_product_attention(q, k, v, attn_mask=batch.attention_mask).transpose(1, 2)
    want_grads = torch.autograd.grad((want * weight).sum(), (q, k, v))
    got = prefix_shared_sdpa(q, k, v, batch.segments)
    got_grads = torch.autograd.grad((got * weight).sum(), (q, k, v))

    assert got.shape == want.shape
    assert (got - want)[real].abs().max() <= 1e-5
    for g, w in zip(got_grads, want_grads, strict=True):
        assert (g - w).abs().max() <= 1e-5


class _Generic(nn.Linear):
    """An nn.Linear that head_logps does not recognise as one: the checkpointed path."""


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("autocast", [False, True])
def test_fused_head_logps_equal_the_checkpointed_head(bias, autocast):
    gen = torch.Generator().manual_seed(0)
    fused = nn.Linear(16, 50, bias=bias)
    generic = _Generic(16, 50, bias=bias)
    generic.load_state_dict(fused.state_dict())
    hidden = torch.randn(37, 16, generator=gen, requires_grad=True)
    targets = torch.randint(0, 50, (37,), generator=gen)
    upstream = torch.randn(37, generator=gen)

    def run(head):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = head_logps(hidden, head, targets, chunk_size=8)
        return out, torch.autograd.grad((out * upstream).sum(), [hidden, *head.parameters()])

    (got, got_grads), (want, want_grads) = run(fused), run(generic)
    tol = 2e-2 if autocast else 1e-5  # bf16 matmuls: both round the same products
    assert got.dtype == want.dtype == torch.float32
    assert (got - want).abs().max() <= tol
    for g, w in zip(got_grads, want_grads, strict=True):
        assert g.dtype == w.dtype
        assert (g - w).abs().max() <= tol * max(1.0, w.abs().max().item())
