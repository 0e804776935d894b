"""PairExamples -> one batch where each pair's prompt is computed once ("prefix sharing").

A pair is laid out as one segment `prompt + chosen + rejected`:

    tokens     p0 p1 ... pP-1 | c0 c1 ... cC-1 | r0 r1 ... rR-1
    positions  0  1  ... P-1  | P  P+1 ...     | P  P+1 ...        (the rejected answer restarts
                                                                    where the chosen one started)
    attends    causal within the segment, except that rejected tokens never see chosen ones

so the rejected answer sees exactly the context it would see in its own `prompt + rejected`
sequence, and both answers' log-probs equal those of two separate forwards (test: <= 1e-4) at the
cost of one prompt. With rows (the plan's packing), several pair segments share a row and never
attend to each other. Log-probs are read at `target_index` (flat [B*T] hidden positions): answer
token j is predicted from the token before it, and the first token of *both* answers from the
prompt's last token, so that position appears twice. `answer` says which answer each target
belongs to: 2k is pair k's chosen answer, 2k+1 its rejected one.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch

from .pack import _round_up


@dataclass
class PairBatch:
    input_ids: torch.Tensor  # [B, T]
    position_ids: torch.Tensor  # [B, T]
    segment_start: torch.Tensor  # [B, T] first index of each token's segment (padding: itself)
    hidden_lo: torch.Tensor  # [B, T] keys in [hidden_lo, hidden_hi) are hidden from the token
    hidden_hi: torch.Tensor  # [B, T] (the chosen answer, for rejected tokens; else empty)
    target_index: torch.Tensor  # [N] flat hidden positions whose next token is a target
    targets: torch.Tensor  # [N] the target token ids
    answer: torch.Tensor  # [N] which answer each target belongs to (2k chosen, 2k+1 rejected)
    answer_tokens: torch.Tensor  # [2 * pairs] token count of each answer (stop token included)
    reference: torch.Tensor | None  # [2 * pairs] reference log-probs, when the method needs them
    num_pairs: int
    num_tokens: int  # real (non-padding) tokens, for tokens/s
    packed: bool = True  # a custom 4D mask, never the plain padded path
    cu_seq_lens: None = None  # no varlen kwargs: a segment is not one causal block
    # per row, the (prompt, chosen, rejected) sizes of its pairs back to back from position 0: lets
    # attention run per segment instead of over the [T x T] mask (train/pair_attention.py)
    segments: list[list[tuple[int, int, int]]] | None = None

    @property
    def attention_mask(self) -> torch.Tensor:
        """[B, 1, T, T] bool, True where query q may attend key k, built on the batch's device."""
        T = self.input_ids.shape[-1]
        k = torch.arange(T, device=self.input_ids.device)[None, None, :]
        q = k.transpose(1, 2)  # [1, T, 1]
        lo, h0, h1 = (x[:, :, None] for x in (self.segment_start, self.hidden_lo, self.hidden_hi))
        return ((k >= lo) & (k <= q) & ~((k >= h0) & (k < h1)))[:, None]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> PairBatch:
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, value in moved.items():
            if isinstance(value, torch.Tensor):
                moved[name] = value.to(device, non_blocking=non_blocking)
        return PairBatch(**moved)


def pair_length(pair) -> int:
    """Tokens of a pair's segment: prompt + chosen + rejected."""
    return len(pair.prompt_ids) + len(pair.chosen_ids) + len(pair.rejected_ids)


def collate_pairs(pairs: Sequence, pad_id: int, *, max_length: int,
                  rows: Sequence[Sequence[int]] | None = None,
                  reference: Sequence[tuple[float, float]] | None = None,
                  pad_multiple: int = 8) -> PairBatch:
    """Lay pairs out as prefix-shared segments: one per row, or as `rows` (indices into `pairs`)
    say. `reference`: (chosen, rejected) reference log-probs per pair."""
    rows = rows if rows is not None else [[i] for i in range(len(pairs))]
    lengths = [pair_length(p) for p in pairs]
    longest = max(sum(lengths[i] for i in row) for row in rows)
    if longest > max_length:
        raise ValueError(f"a row of {longest} tokens is longer than max_length={max_length}")
    width = max(longest, min(_round_up(longest, pad_multiple), max_length))
    B = len(rows)
    ids = torch.full((B, width), pad_id, dtype=torch.long)
    pos = torch.arange(width).repeat(B, 1)
    start = torch.arange(width).repeat(B, 1)  # padding attends to itself only
    lo = torch.zeros((B, width), dtype=torch.long)
    hi = torch.zeros((B, width), dtype=torch.long)
    index, targets, answer, counts, order = [], [], [], [], []
    segments: list[list[tuple[int, int, int]]] = [[] for _ in rows]
    for r, row in enumerate(rows):
        t = 0
        for i in row:
            p = pairs[i]
            P, C, R = len(p.prompt_ids), len(p.chosen_ids), len(p.rejected_ids)
            k = len(order)  # this pair's slot in the batch
            order.append(i)
            segments[r].append((P, C, R))
            ids[r, t:t + P + C + R] = torch.tensor(p.prompt_ids + p.chosen_ids + p.rejected_ids)
            pos[r, t:t + P + C] = torch.arange(P + C)
            pos[r, t + P + C:t + P + C + R] = torch.arange(P, P + R)
            start[r, t:t + P + C + R] = t
            lo[r, t + P + C:t + P + C + R] = t + P  # rejected tokens: the chosen span is hidden
            hi[r, t + P + C:t + P + C + R] = t + P + C
            flat = r * width + t
            last = flat + P - 1  # the prompt's last token predicts both answers' first token
            # [:C], [:R]: an empty answer has no target (not even at `last`), so it cannot shift
            # the other answer's targets onto the wrong positions
            index += [last, *range(flat + P, flat + P + C - 1)][:C]
            index += [last, *range(flat + P + C, flat + P + C + R - 1)][:R]
            targets += p.chosen_ids + p.rejected_ids
            answer += [2 * k] * C + [2 * k + 1] * R
            counts += [C, R]
            t += P + C + R
    ref = None
    if reference is not None:
        ref = torch.tensor([x for i in order for x in reference[i]], dtype=torch.float32)
    long = functools.partial(torch.tensor, dtype=torch.long)  # also when empty (no targets)
    return PairBatch(ids, pos, start, lo, hi, long(index), long(targets), long(answer),
                     torch.tensor(counts, dtype=torch.float32), ref,
                     num_pairs=len(order), num_tokens=sum(lengths[i] for row in rows for i in row),
                     segments=segments)
