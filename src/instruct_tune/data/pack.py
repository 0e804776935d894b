"""Examples -> batches: best-fit packing, length-grouped batching, and the collate that builds
exactly what attention needs to keep rows apart.

Label convention (Hugging Face's): `labels[t]` is the token at position t itself (== input_ids[t])
or -100 where nothing is trained; the loss shifts, so hidden state t predicts labels[t + 1].

Padded batches are right-padded with a 2D mask [B, T]. Packed batches hold several examples per
row, laid out as the caller's `rows` say (the training plan computes them once, with `pack`); each
example attends only to itself and its position_ids restart at 0. What keeps them
apart is carried twice, compactly: the example boundaries (`cu_seq_lens`, the varlen kwargs
flash-attn and train/attention.py use) and, built on demand, the exact 4D boolean
block-diagonal causal mask [B, 1, T, T] (True = attend). `model_inputs` turns a batch into the
keyword arguments for the model's attention implementation.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Protocol

import torch

from .encode import IGNORE


class ExampleLike(Protocol):
    input_ids: list[int]
    labels: list[int]


@dataclass
class Batch:
    """Tensors for one micro-batch. `num_trained` counts target positions after the shift."""

    input_ids: torch.Tensor  # [B, T] long
    labels: torch.Tensor  # [B, T] long, -100 = not trained (HF convention, shifted in the loss)
    position_ids: torch.Tensor  # [B, T] long, restart at 0 for every packed example
    num_trained: int  # labelled target positions (what the loss sums over)
    num_tokens: int  # real (non-padding) tokens, for tokens/s
    packed: bool
    padding_mask: torch.Tensor | None = None  # [B, T] long, 1 = real token (padded batches)
    # Packed batches: example boundaries over the flattened [B * T] tokens (row ends and the
    # padding tail count as boundaries too), int32, and the longest example: the varlen kwargs.
    cu_seq_lens: torch.Tensor | None = None
    max_seq_len: int = 0
    # Flat [B * T] positions t whose next token labels[t + 1] is trained (what the loss reads),
    # computed on the CPU by collate so the loss needs no device sync to find them.
    target_index: torch.Tensor | None = None

    @property
    def attention_mask(self) -> torch.Tensor:
        """[B, T] padding mask, or for packed rows the [B, 1, T, T] bool block-diagonal causal
        mask (True = attend), built on access on the batch's device (cheap there; a CPU-built
        mask would cost ~80 ms and B*T*T bytes to ship per 7 x 2048 batch)."""
        return block_causal_mask(self.position_ids) if self.packed else self.padding_mask

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, value in moved.items():
            if isinstance(value, torch.Tensor):
                moved[name] = value.to(device, non_blocking=non_blocking)
        return Batch(**moved)


def _length(example: ExampleLike | int) -> int:
    return example if isinstance(example, int) else len(example.input_ids)


# ---------------------------------------------------------------------------------------------
# Packing


def pack(lengths: Sequence[int], max_length: int) -> list[list[int]]:
    """Best-fit decreasing: indices into `lengths`, grouped into bins of total <= max_length.

    Longest first; each goes into the open bin with the least room that still fits it.
    Deterministic (ties broken by index). O(n log n) lookups via a sorted list of free space.
    """
    too_long = [i for i, n in enumerate(lengths) if n > max_length]
    if too_long:
        raise ValueError(f"{len(too_long)} examples are longer than max_length={max_length} "
                         f"(first: index {too_long[0]}, {lengths[too_long[0]]} tokens)")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # sorted (room left, bin id)
    for i in order:
        n = lengths[i]
        k = bisect.bisect_left(free, (n, -1))
        if k == len(free):  # fits nowhere: open a new bin
            bins.append([i])
            bisect.insort(free, (max_length - n, len(bins) - 1))
        else:
            room, b = free.pop(k)
            bins[b].append(i)
            bisect.insort(free, (room - n, b))
    return bins


def pack_balanced(lengths: Sequence[int], max_length: int) -> list[list[int]]:
    """As few bins as `pack` makes, with their fill evened out: a batch pads every bin to its
    fullest, so 1,900 tokens go into two bins of ~950, not 1,024 + 876. The smallest capacity
    (from total / bins up, in 1/64 steps of max_length) that still needs no more bins."""
    bins = pack(lengths, max_length)
    if len(bins) < 2:
        return bins
    cap = max(max(lengths), -(-sum(lengths) // len(bins)))
    step = max(1, max_length // 64)
    while cap < max_length:
        even = pack(lengths, cap)
        if len(even) <= len(bins):
            return even
        cap += step
    return bins


def padding_share(bins: Sequence[Sequence[int]], lengths: Sequence[int], max_length: int) -> float:
    """Share of the bins' max_length slots that would be padding (0.0 = perfectly full)."""
    if not bins:
        return 0.0
    used = sum(lengths[i] for b in bins for i in b)
    return 1.0 - used / (len(bins) * max_length)


# ---------------------------------------------------------------------------------------------
# Batching


def batches(examples: Sequence[ExampleLike | int], batch_size: int, *, seed: int, epoch: int,
            mega: int = 50) -> list[list[int]]:
    """The epoch's batches of `batch_size` rows (example indices); the same (seed, epoch) always
    gives the same list, so a resumed run can skip exactly the batches it already trained on.

    Similar lengths share a batch (sorted within shuffled mega-batches of `mega * batch_size`),
    batch order is shuffled, and the batch holding the longest example comes first so an
    out-of-memory error shows up at step 1, not hours in. Packing does not change which rows a
    batch holds (only how they are laid out: `pack`), so packing never changes the training.
    """
    lengths = [_length(e) for e in examples]
    rng = random.Random(f"{seed}-{epoch}")  # str seeds hash deterministically (not per-process)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    out: list[list[int]] = []
    step = mega * batch_size
    for k in range(0, len(order), step):
        group = sorted(order[k:k + step], key=lambda i: -lengths[i])
        out.extend(group[j:j + batch_size] for j in range(0, len(group), batch_size))
    rng.shuffle(out)
    if out:
        longest = max(range(len(out)), key=lambda b: max(lengths[i] for i in out[b]))
        out.insert(0, out.pop(longest))
    return out


# ---------------------------------------------------------------------------------------------
# Collate


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple if multiple > 1 else n


def packed_rows(examples: Sequence[ExampleLike], max_length: int) -> list[list[int]]:
    """`pack` applied to examples: the rows `collate(..., rows=...)` lays them into."""
    return pack([len(e.input_ids) for e in examples], max_length)


def collate(examples: Sequence[ExampleLike], pad_id: int, *, max_length: int,
            rows: Sequence[Sequence[int]] | None = None, pad_multiple: int = 8) -> Batch:
    """Stack examples into a Batch padded to the longest row (rounded up to `pad_multiple`,
    never above max_length). Without `rows`, one example per row (a padded batch); with `rows`
    (indices into `examples`, e.g. the bins the training plan made), a packed batch laid out
    exactly so: each example attends only to itself and its positions restart at 0."""
    lengths = [len(e.input_ids) for e in examples]
    packed = rows is not None
    rows = rows if packed else [[i] for i in range(len(examples))]
    longest = max(sum(lengths[i] for i in row) for row in rows)
    if longest > max_length:
        raise ValueError(f"a row of {longest} tokens is longer than max_length={max_length}")
    width = max(longest, min(_round_up(longest, pad_multiple), max_length))
    B = len(rows)
    ids = torch.full((B, width), pad_id, dtype=torch.long)
    labels = torch.full((B, width), IGNORE, dtype=torch.long)
    pos = torch.empty((B, width), dtype=torch.long)
    real = torch.zeros(B, dtype=torch.long)
    for r, row in enumerate(rows):
        t = 0
        for i in row:
            ex, n = examples[i], lengths[i]
            if n == 0:
                continue
            ids[r, t:t + n] = torch.tensor(ex.input_ids, dtype=torch.long)
            lab = torch.tensor(ex.labels, dtype=torch.long)
            # The first token of an example is never a target (nothing before it in its own
            # row); unlabel it so a packed row never trains it from the previous example.
            lab[0] = IGNORE
            labels[r, t:t + n] = lab
            pos[r, t:t + n] = torch.arange(n)
            t += n
        real[r] = t
        # Padding continues counting in padded rows (so positions are just 0..T-1 and the
        # model's default path applies); in packed rows it is one more segment from 0.
        pos[r, t:] = torch.arange(t, width) if not packed else torch.arange(width - t)
    target = (labels.flatten()[1:] != IGNORE).nonzero().flatten()  # flat t with labels[t+1]
    common = dict(input_ids=ids, labels=labels, position_ids=pos, num_trained=int(target.numel()),
                  num_tokens=int(real.sum()), target_index=target)
    if not packed:
        mask = (torch.arange(width)[None, :] < real[:, None]).long()
        return Batch(**common, packed=False, padding_mask=mask)
    starts = (pos == 0).flatten().nonzero().flatten()  # each example and padding tail starts at 0
    cu = torch.cat([starts, torch.tensor([B * width])]).to(torch.int32)
    return Batch(**common, packed=True, cu_seq_lens=cu, max_seq_len=int(cu.diff().max()))


def block_causal_mask(position_ids: torch.Tensor) -> torch.Tensor:
    """[B, 1, T, T] bool, True where query q may attend key k: same example and k <= q.

    Positions restart at 0 for each example, so q's example starts at q - position[q]; the
    mask is two broadcast comparisons, no per-segment loop.
    """
    T = position_ids.shape[-1]
    q = torch.arange(T, device=position_ids.device)
    start = (q - position_ids)[:, :, None]  # [B, T, 1] first index of q's example
    k = q[None, None, :]
    return ((k >= start) & (k <= q[None, :, None]))[:, None]


def model_inputs(batch: Batch, attn_implementation: str | None,
                 dtype: torch.dtype = torch.float32) -> dict:
    """Keyword arguments for a Hugging Face causal LM forward in the form its attention
    implementation accepts.

    - padded rows: no mask at all. Rows are right-padded and attention is causal, so a real
      token never sees padding; this lets sdpa take its `is_causal` kernel path.
    - packed rows: the varlen kwargs (cu_seq_lens_q/k, max_length_q/k), which flash-attn and
      our per-example sdpa (train/attention.py) use, plus for every non-flash implementation
      the exact 4D mask: additive float in `dtype` for eager, bool otherwise (sdpa).
    """
    out: dict = {"input_ids": batch.input_ids, "position_ids": batch.position_ids,
                 "attention_mask": None}
    if not batch.packed:
        return out
    impl = attn_implementation or "sdpa"
    if batch.cu_seq_lens is not None:
        out.update(cu_seq_lens_q=batch.cu_seq_lens, cu_seq_lens_k=batch.cu_seq_lens,
                   max_length_q=batch.max_seq_len, max_length_k=batch.max_seq_len)
        if impl.startswith("flash"):
            return out
    elif impl.startswith("flash"):  # e.g. prefix-shared pairs (pair_batch.py): a custom mask
        raise ValueError(f"attention '{impl}' cannot take this batch's attention mask; load the "
                         "model with attn_implementation='sdpa' or 'eager'")
    mask = batch.attention_mask
    if impl == "eager":
        zero = torch.zeros((), dtype=dtype, device=mask.device)
        mask = torch.where(mask, zero, torch.finfo(dtype).min)
    out["attention_mask"] = mask
    return out
