"""Packing, batching and collate: properties of the bins and the mask, and packed == unpacked on
real (tiny) Llama, Qwen2 and GPT-2 models."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from instruct_tune.data.pack import (
    IGNORE,
    batches,
    block_causal_mask,
    collate,
    model_inputs,
    pack,
    packed_rows,
    padding_share,
)
from tests.tiny import build_model


@dataclass
class Ex:  # the two fields collate reads from data.tokenize.Example
    input_ids: list[int]
    labels: list[int]


def make_examples(lengths: list[int], vocab: int = 97, seed: int = 0) -> list[Ex]:
    rng = random.Random(seed)
    out = []
    for n in lengths:
        ids = [rng.randrange(1, vocab) for _ in range(n)]
        prompt = rng.randrange(0, n)  # may be 0: first token "labelled" too (raw template)
        out.append(Ex(ids, [IGNORE] * prompt + ids[prompt:]))
    return out


lengths_st = st.lists(st.integers(1, 64), min_size=1, max_size=60)


# --- pack -------------------------------------------------------------------------------------

@given(lengths=lengths_st, max_length=st.integers(64, 200))
@settings(max_examples=200, deadline=None)
def test_pack_properties(lengths, max_length):
    bins = pack(lengths, max_length)
    flat = sorted(i for b in bins for i in b)
    assert flat == list(range(len(lengths)))  # every index exactly once
    assert all(sum(lengths[i] for i in b) <= max_length for b in bins)
    assert bins == pack(list(lengths), max_length)  # deterministic
    assert len(bins) >= math.ceil(sum(lengths) / max_length)
    # Any-fit guarantee of best-fit: no two bins could have shared one row.
    loads = sorted(sum(lengths[i] for i in b) for b in bins)
    if len(loads) >= 2:
        assert loads[0] + loads[1] > max_length


def test_pack_best_fit_choice_and_errors():
    # 6 opens bin A (room 4), 5 opens bin B (room 5); 4 must go to A (tightest fit), then 5 fits B.
    assert pack([6, 5, 4, 5], 10) == [[0, 2], [1, 3]]
    with pytest.raises(ValueError, match="longer than max_length"):
        pack([3, 11], 10)
    assert pack([], 10) == []


def test_padding_share():
    lengths = [6, 4, 3]
    assert padding_share([[0, 1], [2]], lengths, 10) == pytest.approx(1 - 13 / 20)
    assert padding_share([], lengths, 10) == 0.0


# --- batches ----------------------------------------------------------------------------------

@given(lengths=st.lists(st.integers(1, 64), min_size=1, max_size=300), bs=st.integers(1, 9),
       seed=st.integers(0, 3), epoch=st.integers(0, 3))
@settings(max_examples=60, deadline=None)
def test_batches_cover_each_example_once_and_are_deterministic(lengths, bs, seed, epoch):
    got = batches(lengths, bs, seed=seed, epoch=epoch)
    assert sorted(i for b in got for i in b) == list(range(len(lengths)))
    assert got == batches(lengths, bs, seed=seed, epoch=epoch)
    assert all(1 <= len(b) <= bs for b in got)
    assert max(lengths[i] for i in got[0]) == max(lengths)  # OOM shows up at step 1


def test_batches_change_with_epoch_and_group_lengths():
    rng = random.Random(0)
    lengths = [rng.randint(5, 500) for _ in range(2000)]
    a = batches(lengths, 8, seed=1, epoch=0)
    assert a != batches(lengths, 8, seed=1, epoch=1)

    def waste(bs):  # padding share when each batch pads to its longest row
        return 1 - sum(lengths) / sum(max(lengths[i] for i in b) * len(b) for b in bs)

    order = list(range(len(lengths)))
    random.Random(1).shuffle(order)
    naive = [order[k:k + 8] for k in range(0, len(order), 8)]
    assert waste(a) < 0.1 < 0.4 < waste(naive)
    bins = pack(lengths, 512)
    assert padding_share(bins, lengths, 512) < 0.05


# --- collate ----------------------------------------------------------------------------------

@given(lengths=st.lists(st.integers(1, 40), min_size=1, max_size=12), packed=st.booleans(),
       seed=st.integers(0, 10), pad=st.integers(0, 96))
@settings(max_examples=150, deadline=None)
def test_collate_layout_mask_and_labels(lengths, packed, seed, pad):
    """pad may be any id, also one the examples use (pad == eos): labels come from positions."""
    exs = make_examples(lengths, seed=seed)
    max_length = 64
    b = collate(exs, pad_id=pad, max_length=max_length,
                rows=packed_rows(exs, max_length) if packed else None)
    nb, width = b.input_ids.shape
    assert width <= max_length and (width % 8 == 0 or width == max_length)
    assert b.labels.shape == b.position_ids.shape == (nb, width)
    # Find where each example landed from the ids themselves and check everything around it.
    rows = pack(lengths, max_length) if packed else [[i] for i in range(len(exs))]
    assert nb == len(rows)
    trained = 0
    seg = torch.full((nb, width), -1)  # reference segment map, built with plain loops
    for r, row in enumerate(rows):
        t = 0
        for i in row:
            n = lengths[i]
            assert b.input_ids[r, t:t + n].tolist() == exs[i].input_ids
            assert b.position_ids[r, t:t + n].tolist() == list(range(n))  # restart at 0
            want = [IGNORE] + exs[i].labels[1:]  # first token is never a target
            assert b.labels[r, t:t + n].tolist() == want
            trained += sum(x != IGNORE for x in want)
            seg[r, t:t + n] = i
            t += n
        assert (b.labels[r, t:] == IGNORE).all()
        assert (b.input_ids[r, t:] == pad).all()
    assert b.num_trained == trained == len(b.target_index)
    want_index = [r * width + t for r in range(nb) for t in range(width - 1)
                  if b.labels[r, t + 1] != IGNORE]
    assert b.target_index.tolist() == want_index
    assert b.num_tokens == sum(lengths)
    if packed:  # varlen boundaries: where each example (or a padding tail) starts, flattened
        flat = seg.flatten()
        starts = [j for j in range(len(flat)) if j % width == 0 or flat[j] != flat[j - 1]]
        assert b.cu_seq_lens.tolist() == starts + [nb * width]
        assert b.cu_seq_lens.dtype == torch.int32
        assert b.max_seq_len == max(e - s for s, e in zip(starts, starts[1:] + [nb * width], strict=True))
    if not packed:
        assert b.attention_mask.tolist() == (seg >= 0).long().tolist()
        assert b.position_ids.tolist() == [list(range(width))] * nb
        return
    m = b.attention_mask
    assert m.dtype == torch.bool and m.shape == (nb, 1, width, width)
    real = seg >= 0
    same = seg[:, :, None] == seg[:, None, :]
    causal = torch.ones(width, width, dtype=torch.bool).tril()
    both_real = real[:, :, None] & real[:, None, :]
    # Real tokens attend exactly to their own example's earlier tokens: nothing across examples.
    assert torch.equal(m[:, 0] & both_real, same & causal & both_real)
    # Real tokens never see padding; padding sees only padding (no all-masked row, no NaN).
    assert not (m[:, 0] & (real[:, :, None] != real[:, None, :])).any()
    assert m[:, 0].diagonal(dim1=1, dim2=2).all()


def test_block_mask_matches_reference_and_model_inputs():
    pos = torch.tensor([[0, 1, 2, 0, 1, 0, 0, 1]])
    seg = torch.tensor([0, 0, 0, 1, 1, 2, 3, 3])
    ref = (seg[:, None] == seg[None, :]) & torch.ones(8, 8, dtype=torch.bool).tril()
    assert torch.equal(block_causal_mask(pos)[0, 0], ref)
    b = collate(make_examples([3, 2, 1, 2]), 0, max_length=8, rows=packed_rows(make_examples([3, 2, 1, 2]), 8))
    eager = model_inputs(b, "eager")["attention_mask"]
    assert eager.dtype == torch.float32
    assert torch.equal(eager == 0, b.attention_mask)
    sdpa = model_inputs(b, "sdpa")
    assert torch.equal(sdpa["attention_mask"], b.attention_mask)
    flash = model_inputs(b, "flash_attention_2")
    assert flash["attention_mask"] is None  # flash-attn gets the exact varlen boundaries
    assert flash["cu_seq_lens_q"].tolist() == sdpa["cu_seq_lens_k"].tolist() == [0, 3, 5, 7, 8]  # rows 3,2,2,1 (longest first)
    assert flash["max_length_q"] == 3
    padded = collate(make_examples([3, 2]), 0, max_length=8)
    assert model_inputs(padded, "sdpa")["attention_mask"] is None  # right padding + causal


# --- packed == unpacked on real models ---------------------------------------------------------

def n_layers(model) -> int:
    return model.config.num_hidden_layers


def _per_example(logits: torch.Tensor, rows: list[list[int]], lengths: list[int]) -> dict:
    out = {}
    for r, row in enumerate(rows):
        t = 0
        for i in row:
            out[i] = logits[r, t:t + lengths[i]]
            t += lengths[i]
    return out


LENGTHS = [17, 5, 30, 9, 1, 12, 22, 3]


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
@pytest.mark.parametrize("arch", ["llama", "qwen2", "gpt2"])
def test_packed_equals_unpacked(arch, impl, monkeypatch):
    from transformers import AttentionInterface

    from instruct_tune.train import attention
    from instruct_tune.train.loss import loss_sum

    calls = []

    def spy(*args, **kwargs):
        calls.append(kwargs.get("cu_seq_lens_q") is not None)
        return attention.packed_sdpa_forward(*args, **kwargs)

    monkeypatch.setitem(AttentionInterface._global_mapping, attention.NAME, spy)

    model = build_model(arch, 97, attn_implementation=impl)
    exs = make_examples(LENGTHS)
    packed = collate(exs, 0, max_length=48, rows=packed_rows(exs, 48))
    padded = collate(exs, 0, max_length=48)
    assert packed.input_ids.shape[0] < len(exs)  # really packed
    with torch.no_grad():
        lp = model(**model_inputs(packed, impl), use_cache=False).logits
        lu = model(**model_inputs(padded, impl), use_cache=False).logits
        ref = model(input_ids=padded.input_ids, attention_mask=padded.attention_mask).logits
    assert attention.install(model) == (impl == "sdpa")  # per-example kernel for sdpa only
    with torch.no_grad():
        lk = model(**model_inputs(packed, impl), use_cache=False).logits
        lu2 = model(**model_inputs(padded, impl), use_cache=False).logits  # falls back to sdpa
    got = _per_example(lp, pack(LENGTHS, 48), LENGTHS)
    kernel = _per_example(lk, pack(LENGTHS, 48), LENGTHS)
    for i, n in enumerate(LENGTHS):
        assert (got[i] - lu[i, :n]).abs().max() <= 1e-4
        assert (kernel[i] - lu[i, :n]).abs().max() <= 1e-4
        assert (lu[i, :n] - ref[i, :n]).abs().max() <= 1e-4  # dropping the 2D mask is exact
    assert torch.equal(lu2, lu)
    # the per-example kernel ran (sdpa only), and every layer got the example boundaries
    assert calls == ([True] * n_layers(model) + [False] * n_layers(model) if impl == "sdpa" else [])
    (sp, np_), (su, nu) = loss_sum(model, packed), loss_sum(model, padded)
    assert np_ == nu == packed.num_trained == padded.num_trained
    assert abs(sp.item() - su.item()) <= 1e-4 * max(1.0, abs(su.item()))


@pytest.mark.parametrize("arch, impl", [("llama", "sdpa"), ("qwen2", "eager"), ("gpt2", "sdpa")])
def test_packed_logits_equal_each_example_run_alone(arch, impl):
    """Any lengths, any row size: each example's logits in a packed row equal those of the
    example run on its own (no batch, no mask, eager attention), and the packed loss equals the
    padded one. Examples are found in the rows from the ids and position restarts alone."""
    from instruct_tune.train import attention
    from instruct_tune.train.loss import loss_sum

    model = build_model(arch, 97, attn_implementation=impl)
    ref = build_model(arch, 97, attn_implementation="eager")  # same seed: same weights
    attention.install(model)  # the per-example kernel for sdpa, as loss_sum does
    impl_now = model.config._attn_implementation

    @given(lengths=st.lists(st.integers(1, 24), min_size=1, max_size=8),
           max_length=st.integers(24, 64), seed=st.integers(0, 5))
    @settings(max_examples=20, deadline=None, derandomize=True)
    def prop(lengths, max_length, seed):
        exs = make_examples(lengths, seed=seed)
        b = collate(exs, 0, max_length=max_length, rows=packed_rows(exs, max_length))
        with torch.no_grad():
            logits = model(**model_inputs(b, impl_now), use_cache=False).logits
        want: dict[tuple, list[torch.Tensor]] = {}
        for e in exs:
            with torch.no_grad():
                alone = ref(input_ids=torch.tensor([e.input_ids]), use_cache=False).logits[0]
            want.setdefault(tuple(e.input_ids), []).append(alone)
        for r in range(b.input_ids.shape[0]):
            starts = (b.position_ids[r] == 0).nonzero().flatten().tolist() + [b.input_ids.shape[1]]
            for s, e in zip(starts, starts[1:], strict=False):
                key = tuple(b.input_ids[r, s:e].tolist())
                if key in want:  # else the padding tail (id 0, never an example id)
                    assert (logits[r, s:e] - want[key].pop()).abs().max() <= 1e-4
                    if not want[key]:
                        del want[key]
        assert not want, "examples missing from the packed rows"
        (lp, np_), (lu, nu) = loss_sum(model, b), loss_sum(model, collate(exs, 0,
                                                                            max_length=max_length))
        assert np_ == nu and abs(lp.item() - lu.item()) <= 1e-4 * max(1.0, abs(lu.item()))

    assert torch.equal(model.lm_head.weight, ref.lm_head.weight)
    prop()


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_position_ids_alone_do_not_isolate_packed_rows(arch):
    """Why the 4D mask exists. transformers 5.x only infers packed rows from position_ids when
    no 2D mask is passed AND no cache is in use; collators usually pass an all-ones mask and
    the configs default to use_cache=True, and then rows attend to each other (logits off by
    ~0.1-2). Restarting positions matters for GPT-2 (learned absolute embeddings); RoPE models
    only see relative offsets, so for them the 4D mask alone is already exact."""
    model = build_model(arch, 97)
    exs = make_examples(LENGTHS)
    packed = collate(exs, 0, max_length=48, rows=packed_rows(exs, 48))
    padded = collate(exs, 0, max_length=48)
    rows = pack(LENGTHS, 48)
    with torch.no_grad():
        lu = model(**model_inputs(padded, "sdpa")).logits
        ones = torch.ones_like(packed.input_ids)
        leaky = {
            "2D ones mask": model(input_ids=packed.input_ids, position_ids=packed.position_ids,
                                  attention_mask=ones, use_cache=False).logits,
            "use_cache default": model(input_ids=packed.input_ids,
                                       position_ids=packed.position_ids).logits,
        }
        no_pos = model(input_ids=packed.input_ids, attention_mask=packed.attention_mask).logits
    if arch == "gpt2":
        leaky["4D mask, no positions"] = no_pos
    for why, logits in leaky.items():
        got = _per_example(logits, rows, LENGTHS)
        diff = max((got[i] - lu[i, :n]).abs().max().item() for i, n in enumerate(LENGTHS))
        assert diff > 1e-2, why
    if arch == "llama":
        got = _per_example(no_pos, rows, LENGTHS)
        assert max((got[i] - lu[i, :n]).abs().max().item() for i, n in enumerate(LENGTHS)) < 1e-4


@given(lengths=st.lists(st.integers(1, 64), min_size=1, max_size=40))
@settings(max_examples=80, deadline=None)
def test_balanced_packing_keeps_the_bin_count_and_evens_the_fill(lengths):
    from instruct_tune.data.pack import pack_balanced

    plain, even = pack(lengths, 64), pack_balanced(lengths, 64)
    assert sorted(i for b in even for i in b) == list(range(len(lengths)))
    assert len(even) == len(plain)
    fill = [sum(lengths[i] for i in b) for b in even]
    assert max(fill) <= 64
    assert max(fill) <= max(sum(lengths[i] for i in b) for b in plain)  # never more padding
