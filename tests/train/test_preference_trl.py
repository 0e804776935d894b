"""Our preference losses against TRL's own loss code (DPOTrainer._compute_loss with a stub model
and a precomputed reference; CPOTrainer.cpo_loss for SimPO; ORPOTrainer.odds_ratio_loss). Skips
cleanly when TRL is not installed or its private API has changed."""

from __future__ import annotations

import random
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from instruct_tune.train.preference import (
    PairLogps,
    PreferenceLossConfig,
    preference_losses,
    preference_metrics,
)
from tests.train.test_preference_loss import random_pairs


def _trl_dpo(loss_type, beta, smooth, pol: PairLogps, ref: PairLogps):
    """Run TRL's DPOTrainer._compute_loss with a stub model that returns given per-token log-probs
    (precomputed reference). Returns (mean loss, TRL's logged metrics)."""
    trl = pytest.importorskip("trl")
    n = torch.cat([pol.chosen_tokens, pol.rejected_tokens]).long()
    sums = torch.cat([pol.chosen, pol.rejected])
    rows, width = n.numel(), int(n.max()) + 2
    completion = torch.zeros(rows, width, dtype=torch.long)
    for i, k in enumerate(n.tolist()):
        completion[i, 1:1 + k] = 1  # position 0 is the prompt
    shift = completion[:, 1:].to(sums.dtype)
    per_token = shift * (sums / n.to(sums.dtype)).unsqueeze(1)  # zeros outside the answer
    zeros = torch.zeros_like(per_token)
    out = SimpleNamespace(log_probs=per_token, entropy=zeros, mean_logits=zeros,
                          is_top1=zeros.bool())
    acc = SimpleNamespace(device="cpu", gather_for_metrics=lambda x: x, gather=lambda x: x)
    stub = SimpleNamespace(
        model=SimpleNamespace(training=True), accelerator=acc, aux_loss_enabled=False, ld_alpha=None,
        precompute_ref_logps=True, f_divergence_type="reverse_kl", loss_types=[loss_type],
        loss_weights=[1.0], beta=beta, label_smoothing=smooth, use_weighting=False,
        _metrics=defaultdict(lambda: defaultdict(list)), _total_train_tokens=0, _tp_size=1)
    inputs = {"input_ids": torch.zeros(rows, width, dtype=torch.long),
              "attention_mask": torch.ones(rows, width, dtype=torch.long),
              "completion_mask": completion, "ref_chosen_logps": ref.chosen,
              "ref_rejected_logps": ref.rejected}
    try:
        loss = trl.DPOTrainer._compute_loss(stub, lambda **kw: out, inputs, False)
    except (AttributeError, TypeError) as e:  # private API of another TRL version
        pytest.skip(f"TRL {trl.__version__}: DPOTrainer._compute_loss not callable this way ({e})")
    return loss.item(), {k: v[-1] for k, v in stub._metrics["train"].items()}


@pytest.mark.parametrize("method,loss_type,smooth", [
    ("dpo", "sigmoid", 0.0), ("ipo", "ipo", 0.0), ("hinge", "hinge", 0.0), ("robust", "robust", 0.2)])
def test_matches_trl_dpo_trainer(method, loss_type, smooth):
    pol, ref = random_pairs(random.Random(11), 6)
    cfg = PreferenceLossConfig(method=method, beta=0.2, label_smoothing=smooth)
    losses, c, r = preference_losses(cfg, pol, ref)
    for i in range(6):  # one pair per call: TRL returns the batch mean only
        one = [PairLogps(*(t[i:i + 1] for t in (x.chosen, x.rejected, x.chosen_tokens,
                                                x.rejected_tokens))) for x in (pol, ref)]
        trl_loss, _ = _trl_dpo(loss_type, 0.2, smooth, *one)
        assert losses[i].item() == pytest.approx(trl_loss, rel=1e-6, abs=1e-9)
    trl_loss, trl_metrics = _trl_dpo(loss_type, 0.2, smooth, pol, ref)
    ours = preference_metrics(losses, c, r, pol)
    assert ours["loss"] == pytest.approx(trl_loss, rel=1e-6)
    for k in ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins",
              "logps/chosen", "logps/rejected"):
        assert ours[k] == pytest.approx(trl_metrics[k], rel=1e-6, abs=1e-9), k


def test_matches_trl_simpo_and_orpo():
    pytest.importorskip("trl")
    try:
        from trl.experimental.cpo import CPOTrainer
        from trl.experimental.orpo import ORPOTrainer
    except ImportError:
        pytest.skip("this TRL has no trl.experimental.cpo/orpo")
    pol, _ = random_pairs(random.Random(5), 8)
    ac, ar = pol.chosen / pol.chosen_tokens, pol.rejected / pol.rejected_tokens  # TRL averages first
    acc = SimpleNamespace(device="cpu")
    cpo = SimpleNamespace(alpha=0.0, beta=2.0, simpo_gamma=0.7, loss_type="simpo",
                          label_smoothing=0.1, accelerator=acc)
    want, wc, wr = CPOTrainer.cpo_loss(cpo, ac, ar)
    cfg = PreferenceLossConfig(method="simpo", beta=2.0, simpo_gamma=0.7, label_smoothing=0.1)
    for got, w in zip(preference_losses(cfg, pol, None), (want, wc, wr), strict=True):
        assert torch.allclose(got, w, rtol=1e-9, atol=0)
    # TRL's ORPO returns lambda * log sigmoid(log odds) per pair; its NLL term is a batch token mean
    # over prompt + answer, so compare the odds-ratio term and add our per-pair answer NLL back
    orpo = SimpleNamespace(beta=0.25, accelerator=acc)
    ratio, wc, wr, _, _ = ORPOTrainer.odds_ratio_loss(orpo, ac, ar)
    losses, c, r = preference_losses(PreferenceLossConfig(method="orpo", orpo_lambda=0.25), pol, None)
    assert torch.allclose(losses, -ac - ratio.double(), rtol=1e-6, atol=0)  # TRL computes in float32
    assert torch.allclose(c, wc.double(), rtol=1e-6) and torch.allclose(r, wr.double(), rtol=1e-6)
