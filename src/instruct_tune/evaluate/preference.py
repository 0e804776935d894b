"""`eval` on a preference file: does the model prefer the chosen answers, and by how much more than
its reference does? Plus the usual generation eval on the chosen answers, before and after.

DPO's implicit reward of an answer is beta * (log p_model(answer) - log p_reference(answer)),
summed over its tokens, stop token included (train/preference.py, as TRL logs it). The reference
is the model preference tuning started from, so `compare` (the "before" model) is the reference:
reward accuracy is the share of pairs whose chosen answer gains more log-prob than the rejected
one, the reward margin by how much (in beta units). Without `compare` there is no reward, only the
model's own preference: how often, and by how much, it gives the chosen answer more log-prob than
the rejected one, summed (what DPO compares) and per token (fairer across lengths; SimPO's reward).

Both models score the same token ids: the pairs are tokenized once with the evaluated model's
tokenizer and template (data/pair_tokenize.py), laid out prefix-shared (data/pair_batch.py) and
read with the chunked head (train/loss.answer_logps), one model in memory at a time.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..data.pair_batch import collate_pairs, pair_length
from ..data.pairs import PairRecord
from ..errors import ConfigError
from ..models import local_model_dir
from ..train.loss import answer_logps
from ..train.preference import (
    PairLogps,
    PreferenceLossConfig,
    preference_losses,
    preference_metrics,
)
from .compare import _prompts, _release, evaluate
from .generate import Generator, err

__all__ = ["evaluate_pairs", "logp_metrics", "reward_metrics", "score_pairs"]


@torch.no_grad()
def score_pairs(model, pairs: Sequence, pad_id: int, batch_size: int = 16) -> np.ndarray:
    """[pairs, 2] summed log-probs of (chosen, rejected) under `model`, stop tokens included."""
    out = np.zeros((len(pairs), 2), dtype=np.float64)
    device = next(model.parameters()).device
    order = sorted(range(len(pairs)), key=lambda i: -pair_length(pairs[i]))  # little padding
    for k in range(0, len(order), batch_size):
        idx = order[k:k + batch_size]
        chunk = [pairs[i] for i in idx]
        batch = collate_pairs(chunk, pad_id, max_length=max(map(pair_length, chunk)))
        out[idx] = answer_logps(model, batch.to(device)).double().view(-1, 2).cpu().numpy()
    return out


def logp_metrics(logps: np.ndarray, tokens: np.ndarray) -> dict[str, float]:
    """A model's own preference: mean summed log-probs (TRL's logps/*), their mean margin, and
    how often the chosen answer has more log-prob, summed and per token (ties are not wins)."""
    c, r = logps[:, 0], logps[:, 1]
    per_token = logps / np.maximum(tokens, 1)
    return {"logps/chosen": float(c.mean()), "logps/rejected": float(r.mean()),
            "logps/margins": float((c - r).mean()), "logps/accuracies": float((c > r).mean()),
            "mean_logps/accuracies": float((per_token[:, 0] > per_token[:, 1]).mean())}


def reward_metrics(policy: np.ndarray, reference: np.ndarray, tokens: np.ndarray,
                   beta: float) -> tuple[dict[str, float], np.ndarray]:
    """DPO's loss and rewards/{chosen,rejected,accuracies,margins} of the policy against the
    reference (train/preference.py, so the numbers are those training logs), and each pair's
    reward margin."""
    def pl(x: np.ndarray) -> PairLogps:
        t = torch.from_numpy(tokens)
        return PairLogps(torch.from_numpy(x[:, 0]), torch.from_numpy(x[:, 1]), t[:, 0], t[:, 1])

    pol = pl(policy)
    losses, chosen, rejected = preference_losses(PreferenceLossConfig("dpo", beta), pol, pl(reference))
    metrics = preference_metrics(losses, chosen, rejected, pol)
    keep = ("loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins")
    return {k: metrics[k] for k in keep}, (chosen - rejected).numpy()


def _reference_model(path, tokenizer, load: dict):
    """The reference model, able to score the evaluated model's token ids: it must share the
    tokenizer (tokens the template added are rows it never trained: exactly its state before)."""
    from ..models import load_model, load_tokenizer
    from .generate import tokenizer_dir

    theirs = load_tokenizer(tokenizer_dir(Path(path)), trust_remote_code=load["trust_remote_code"]).get_vocab()
    ours = tokenizer.get_vocab()
    differ = [t for t, i in theirs.items() if ours.get(t) != i]
    if differ:
        raise ConfigError(f"--compare {path} has another tokenizer than the evaluated model "
                          f"({len(differ):,} tokens differ, e.g. {differ[0]!r}): rewards compare "
                          "log-probs of the same tokens, so the reference must be the model "
                          "preference tuning started from (or one with its tokenizer).")
    model = load_model(path, **load)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    if model.get_input_embeddings().num_embeddings < len(tokenizer):
        model.resize_token_embeddings(len(tokenizer))
    return model


def _preference(model_dir, pairs: Sequence[PairRecord], compare, beta: float, template,
                batch_size: int, load: dict, skip_invalid: bool,
                progress: bool) -> tuple[dict, object]:
    """The preference part of the report, and the template the model was scored with."""
    from ..data.pair_tokenize import build_pairs

    gen = Generator.load(model_dir, template=template, **load)
    if not skip_invalid:  # a prompt the generation part will refuse: say so before scoring
        _prompts(gen, [p.record("chosen") for p in pairs], skip_invalid)
    tokenized = build_pairs(pairs, gen.tokenizer, gen.template,
                            max_length=gen.context or 1 << 30, cache_dir="none")
    if not tokenized.examples:
        raise ConfigError(f"No pair fits the model's context of {gen.context} tokens (first: "
                          f"{tokenized.dropped[0]}); nothing to score.")
    if tokenized.dropped:
        first = tokenized.dropped[0]
        why = first.message.split(";")[0].replace("--max-length", "the model's context")
        err.print(f"[yellow]warning:[/] {len(tokenized.dropped)} of {len(pairs)} pairs not scored: "
                  f"too long or not tokenizable (first: {first.path}:{first.line}: {why}).",
                  highlight=False)
    ex = tokenized.examples
    tokens = np.array([[len(p.chosen_ids), len(p.rejected_ids)] for p in ex], dtype=np.int64)
    say = (lambda name: err.print(f"scoring {len(ex):,} pairs with {name}", highlight=False)) \
        if progress else (lambda name: None)
    say(model_dir)
    policy = score_pairs(gen.model, ex, gen.pad_id, batch_size)
    tokenizer, tmpl, pad = gen.tokenizer, gen.template, gen.pad_id
    device = next(gen.model.parameters()).device
    _release(gen)
    report = {"n": len(ex), "not_scored": len(tokenized.dropped), "beta": beta,
              "model": str(model_dir), **logp_metrics(policy, tokens)}
    rows = [{"source": str(p.source), "chosen_tokens": int(t[0]), "rejected_tokens": int(t[1]),
             "chosen_logp": float(lp[0]), "rejected_logp": float(lp[1])}
            for p, t, lp in zip(ex, tokens, policy, strict=True)]
    if compare is not None:
        ref_model = _reference_model(compare, tokenizer, load).to(device).eval()
        say(compare)
        reference = score_pairs(ref_model, ex, pad, batch_size)
        del ref_model
        report["base"] = {"model": str(compare), **logp_metrics(reference, tokens)}
        rewards, margins = reward_metrics(policy, reference, tokens, beta)
        report.update(rewards)
        for row, lp, m in zip(rows, reference, margins, strict=True):
            row.update(ref_chosen_logp=float(lp[0]), ref_rejected_logp=float(lp[1]),
                       reward_margin=float(m))
    report["rows"] = rows
    return report, tmpl


def evaluate_pairs(model_dir: str | os.PathLike, pairs: Sequence[PairRecord], *,
                   compare: str | os.PathLike | None = None, beta: float = 0.1,
                   template: str | None = None, max_new_tokens: int = 256,
                   temperature: float = 0.0, top_p: float = 1.0, batch_size: int = 16,
                   samples: int = 3, trust_remote_code: bool = False, allow_pickle: bool = False,
                   skip_invalid: bool = False, progress: bool = False) -> dict:
    """The generation report of `compare.evaluate` on the chosen answers (each pair as the SFT
    record prompt -> chosen), with a `preference` part: the model's log-prob metrics, and with
    `compare` (the reference) its metrics under `base` plus DPO's loss and rewards at `beta`."""
    if not pairs:
        raise ConfigError("No pairs to evaluate.")
    PreferenceLossConfig("dpo", beta)  # a bad beta fails here, before any model loads
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1 (got {batch_size}).")
    for name in (model_dir, compare):  # a typo in --compare fails now, not after scoring
        if name is not None:
            local_model_dir(name)
    load = {"trust_remote_code": trust_remote_code, "allow_pickle": allow_pickle}
    pref, tmpl = _preference(model_dir, pairs, compare, beta, template, batch_size, load,
                             skip_invalid, progress)
    report = evaluate(model_dir, [p.record("chosen") for p in pairs], compare=compare,
                      template=tmpl, max_new_tokens=max_new_tokens, temperature=temperature,
                      top_p=top_p, batch_size=batch_size, samples=samples,
                      trust_remote_code=trust_remote_code, allow_pickle=allow_pickle,
                      skip_invalid=skip_invalid, progress=progress)
    report["preference"] = pref
    return report
