"""Reference log-probs for preference tuning: computed once, before training, then only numbers.

DPO-family losses compare the policy with a frozen reference model. Instead of holding a second
model in memory for the whole run (twice the weights, a second forward per step), every pair's
(chosen, rejected) summed log-prob under the reference is computed in one no-grad pass with
dropout off, before the first optimizer step, and cached next to the tokenization cache:
- full fine-tuning: the reference is the starting model itself (the pass runs before training);
- LoRA: the model with its adapters disabled (peft's `disable_adapter`), no copy at all.
Under several processes each computes a share and the shares are summed, so all processes hold
the same numbers. The cache key covers the model's files, the tokenized pairs and the precision,
so a resumed run reads exactly what the first run computed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from ..data.pair_batch import collate_pairs, pair_length
from .loss import answer_logps


def describe(lora: bool) -> str:
    """For the run header: which model the rewards are measured against."""
    return ("reference: the base model with the adapters disabled (no copy), log-probs computed "
            "once before training" if lora else "reference: the starting model, log-probs "
            "computed once before training (not kept in memory)")


def reference_logps(model, pairs: Sequence, accelerator, *, pad_id: int, batch_size: int,
                    max_length: int, lora: bool, cache_file: Path | None,
                    say: Callable[[str], None]) -> list[tuple[float, float]]:
    """(chosen, rejected) summed log-probs of every pair under the reference model."""
    if cache_file is not None and cache_file.is_file():
        values = np.load(cache_file)
        if values.shape == (len(pairs), 2):
            say(f"reference log-probs: read from the cache ({cache_file.name})")
            return [tuple(map(float, row)) for row in values]
    world, rank = accelerator.num_processes, accelerator.process_index
    mine = sorted(range(rank, len(pairs), world), key=lambda i: -pair_length(pairs[i]))
    out = torch.zeros((len(pairs), 2), dtype=torch.float64, device=accelerator.device)
    was_training = model.training
    model.eval()  # dropout off: the reference is deterministic
    off = model.disable_adapter() if lora else contextlib.nullcontext()
    with torch.no_grad(), off:
        for k in range(0, len(mine), batch_size):
            chunk = mine[k:k + batch_size]
            batch = collate_pairs([pairs[i] for i in chunk], pad_id, max_length=2 * max_length)
            with accelerator.autocast():
                logps = answer_logps(model, batch.to(accelerator.device)).double()
            out[torch.tensor(chunk, device=out.device)] = logps.view(-1, 2)
    model.train(was_training)
    if world > 1:
        out = accelerator.reduce(out, reduction="sum")
    values = out.cpu().numpy()
    if cache_file is not None and accelerator.is_main_process:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(f".{rank}.tmp.npy")
        np.save(tmp, values)
        tmp.replace(cache_file)
    return [tuple(map(float, row)) for row in values]


def cache_file(cache_dir: str | None, model: str, pairs: Sequence, *, precision: str,
               lora: bool) -> Path | None:
    """Where this reference pass is cached (None: caching off)."""
    from ..data.cache import open_cache

    store = open_cache(cache_dir)
    if store is None:
        return None
    h = hashlib.sha256(json.dumps([_model_fingerprint(model), precision, lora]).encode())
    for p in pairs:
        for ids in (p.prompt_ids, p.chosen_ids, p.rejected_ids):
            h.update(np.asarray(ids, dtype=np.int64).tobytes())
            h.update(b"|")
    return store.dir / "reference" / f"{h.hexdigest()[:32]}.npy"


def _model_fingerprint(model: str) -> list:
    """The model's files by name, size and modification time (a hub name: the name)."""
    path = Path(model)
    if not path.is_dir():
        return [model]
    return [str(path.resolve())] + sorted(
        (f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in path.iterdir() if f.is_file())
