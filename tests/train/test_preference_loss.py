"""Preference losses: published and hand-computed values, each formula written out independently
with Python floats, invariants (policy == reference, monotonicity, empty answers), gradients, metric
accumulation. TRL's own loss code is compared in test_preference_trl.py."""

from __future__ import annotations

import math
import random
from collections import defaultdict

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from instruct_tune.errors import ConfigError
from instruct_tune.train.preference import (
    METHODS,
    NEEDS_REFERENCE,
    PairLogps,
    PreferenceLossConfig,
    metric_sums,
    metrics_from_sums,
    preference_losses,
    preference_metrics,
)

LOG2 = math.log(2)


def pl(chosen, rejected, nc=None, nr=None, dtype=torch.float32) -> PairLogps:
    nc = nc if nc is not None else [1] * len(chosen)
    nr = nr if nr is not None else [1] * len(rejected)
    return PairLogps(torch.tensor(chosen, dtype=dtype), torch.tensor(rejected, dtype=dtype),
                     torch.tensor(nc), torch.tensor(nr))


def run(method, policy, reference=None, **kw):
    return preference_losses(PreferenceLossConfig(method=method, **kw), policy, reference)


def close(t: torch.Tensor, expected, tol=1e-4):
    assert t.tolist() == pytest.approx(list(expected), abs=tol)


# ---- published values (torchtune's loss tests) -------------------------------------------------

def test_sigmoid_dpo_published_values():
    policy = pl([-0.5, -10.0, -1.0], [-0.1, -30.0, -21.0])
    ref = pl([-0.5, -10.1, -0.1], [-0.1, -20.1, -0.1])
    losses, c, r = run("dpo", policy, ref, beta=0.1)
    close(losses, [0.6931, 0.3133, 0.1269])
    close(c, [0.0, 0.01, -0.09])  # beta * (policy - reference), per answer
    close(r, [0.0, -0.99, -2.09])


def test_simpo_published_values():
    policy = pl([-0.5, -1.0, -2.0], [-1.0, -0.5, -2.5])
    losses, c, r = run("simpo", policy, beta=2.0, simpo_gamma=0.25 * 2.0)
    close(losses, [0.4741, 1.7014, 0.4741])
    close(c, [-1.0, -2.0, -4.0])  # beta * mean logp
    close(r, [-2.0, -1.0, -5.0])


# ---- hand-computed values ------------------------------------------------------------------------

def test_ipo_averages_log_ratios_over_tokens():
    # pair 0: chosen ratio -3-(-6)=3 over 3 tokens -> 1, rejected -8-(-4)=-4 over 2 -> -2: delta 3
    # pair 1: chosen ratio 0, rejected -2-(-1)=-1 over 1 token: delta 1. beta 0.5 -> target 1/(2b)=1
    policy = pl([-3.0, -2.0], [-8.0, -2.0], nc=[3, 2], nr=[2, 1])
    ref = pl([-6.0, -2.0], [-4.0, -1.0], nc=[3, 2], nr=[2, 1])
    losses, c, r = run("ipo", policy, ref, beta=0.5)
    close(losses, [(3 - 1) ** 2, (1 - 1) ** 2])
    close(c, [1.5, 0.0])  # rewards stay beta * summed log-ratio, as TRL logs them
    close(r, [-2.0, -0.5])


def test_hinge():
    # logits (pc-rc)-(pr-rr): 5, 20, -10 -> relu(1 - 0.1*logits): 0.5, 0, 2
    policy = pl([-1.0, -1.0, -11.0], [-6.0, -21.0, -1.0], nc=[7, 7, 7], nr=[9, 9, 9])
    ref = pl([-1.0, -1.0, -1.0], [-1.0, -1.0, -1.0])
    close(run("hinge", policy, ref, beta=0.1)[0], [0.5, 0.0, 2.0])


def test_robust_and_label_smoothed_dpo():
    # beta 1, logits log 3: sigmoid(log 3) = 3/4, sigmoid(-log 3) = 1/4, eps 0.1
    policy = pl([math.log(3)], [0.0])
    ref = pl([0.0], [0.0])
    robust = (-0.9 * math.log(0.75) + 0.1 * math.log(0.25)) / (1 - 0.2)
    cdpo = -0.9 * math.log(0.75) - 0.1 * math.log(0.25)
    close(run("robust", policy, ref, beta=1.0, label_smoothing=0.1)[0], [robust])
    close(run("robust", policy, ref, beta=1.0, label_smoothing=0.1)[0], [0.150356])
    close(run("dpo", policy, ref, beta=1.0, label_smoothing=0.1)[0], [cdpo])
    close(run("dpo", policy, ref, beta=1.0, label_smoothing=0.1)[0], [0.397543])
    # SimPO's smoothing is the same cDPO form: beta*(ac-ar)-gamma = 0.5, eps 0.2
    close(run("simpo", pl([-1.0], [-2.0]), beta=1.0, simpo_gamma=0.5, label_smoothing=0.2)[0],
          [0.8 * math.log1p(math.exp(-0.5)) + 0.2 * math.log1p(math.exp(0.5))])


def test_orpo():
    # chosen p=1/2 per token (2 tokens), rejected p=1/4 (1 token): odds 1 and 1/3, log odds ratio
    # log 3, log sigmoid(log 3) = log 3/4; NLL = per-token mean = log 2
    policy = pl([2 * math.log(0.5), math.log(0.5)], [math.log(0.25), 3 * math.log(0.5)],
                nc=[2, 1], nr=[1, 3])
    losses, c, r = run("orpo", policy, orpo_lambda=0.1)
    close(losses, [LOG2 - 0.1 * math.log(0.75), LOG2 + 0.1 * LOG2])  # pair 1: equal odds
    close(losses, [0.721915, 0.762462])
    close(c, [0.1 * math.log(0.5)] * 2)  # lambda * mean logp, as TRL
    close(r, [0.1 * math.log(0.25), 0.1 * math.log(0.5)])


def test_sft_weight_adds_chosen_per_token_nll_to_every_method():
    policy = pl([-6.0], [-2.0], nc=[3], nr=[4])
    for method in METHODS:
        ref = policy if method in NEEDS_REFERENCE else None
        base = run(method, policy, ref)[0]
        with_sft = run(method, policy, ref, sft_weight=0.5)[0]
        close(with_sft - base, [0.5 * 6.0 / 3])
    close(run("dpo", policy, policy, sft_weight=0.5)[0], [LOG2 + 1.0])


# ---- every formula, written out with floats, on random pairs ------------------------------------

def logsig(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def expected(method, cfg, pc, pr, nc, nr, rc, rr) -> float:
    b, e = cfg.beta, cfg.label_smoothing
    x = (pc - rc) - (pr - rr)
    nc1, nr1 = max(nc, 1), max(nr, 1)
    if method == "dpo":
        out = -(1 - e) * logsig(b * x) - e * logsig(-b * x)
    elif method == "ipo":
        out = ((pc - rc) / nc1 - (pr - rr) / nr1 - 1 / (2 * b)) ** 2
    elif method == "hinge":
        out = max(0.0, 1 - b * x)
    elif method == "robust":
        out = (-(1 - e) * logsig(b * x) + e * logsig(-b * x)) / (1 - 2 * e)
    elif method == "simpo":
        z = b * (pc / nc1 - pr / nr1) - cfg.simpo_gamma
        out = -(1 - e) * logsig(z) - e * logsig(-z)
    else:
        ac, ar = pc / nc1, pr / nr1
        odds = math.log(math.exp(ac) / (1 - math.exp(ac))) - math.log(math.exp(ar) / (1 - math.exp(ar)))
        out = -ac - cfg.orpo_lambda * logsig(odds)
    return out + cfg.sft_weight * -pc / nc1


def random_pairs(rng: random.Random, n: int):
    nc = [rng.randint(1, 40) for _ in range(n)]
    nr = [rng.randint(1, 40) for _ in range(n)]
    pol = pl([-rng.uniform(0.05, 3) * k for k in nc], [-rng.uniform(0.05, 3) * k for k in nr],
             nc, nr, dtype=torch.float64)
    ref = pl([-rng.uniform(0.05, 3) * k for k in nc], [-rng.uniform(0.05, 3) * k for k in nr],
             nc, nr, dtype=torch.float64)
    return pol, ref


@pytest.mark.parametrize("method,smooth", [(m, 0.0) for m in METHODS]
                         + [(m, 0.2) for m in ("dpo", "robust", "simpo")])  # the others reject it
def test_formulas_on_random_pairs(method, smooth):
    rng = random.Random(METHODS.index(method) * 10 + int(smooth * 10))
    cfg = PreferenceLossConfig(method=method, beta=rng.uniform(0.05, 2), label_smoothing=smooth,
                               simpo_gamma=rng.uniform(0, 1), orpo_lambda=rng.uniform(0.05, 1),
                               sft_weight=rng.choice([0.0, 0.3]))
    pol, ref = random_pairs(rng, 16)
    losses = preference_losses(cfg, pol, ref)[0]
    want = [expected(method, cfg, *(float(t[i]) for t in (pol.chosen, pol.rejected, pol.chosen_tokens,
                     pol.rejected_tokens, ref.chosen, ref.rejected))) for i in range(16)]
    assert losses.tolist() == pytest.approx(want, rel=1e-9, abs=1e-12)


# ---- invariants ----------------------------------------------------------------------------------

@pytest.mark.parametrize("method,smooth", [("dpo", 0.0), ("dpo", 0.3), ("robust", 0.3)])
def test_policy_equal_to_reference_gives_log2_and_zero_rewards(method, smooth):
    policy = pl([-3.5, -120.25, -0.0625], [-7.0, -1.5, -40.0], nc=[3, 90, 1], nr=[5, 2, 33])
    ref = PairLogps(policy.chosen.clone(), policy.rejected.clone(), policy.chosen_tokens,
                    policy.rejected_tokens)
    losses, c, r = run(method, policy, ref, label_smoothing=smooth)
    assert (losses - LOG2).abs().max().item() <= 1e-6
    assert c.abs().max().item() == 0 and r.abs().max().item() == 0
    m = preference_metrics(losses, c, r, policy)
    assert m["rewards/accuracies"] == 0.0 and m["rewards/margins"] == 0.0  # a tie is not a win


@settings(max_examples=60, deadline=None)
@given(method=st.sampled_from(["dpo", "robust", "simpo", "orpo"]),
       chosen=st.floats(-20, -0.5), rejected=st.floats(-20, -0.5), rise=st.floats(0.01, 0.4),
       beta=st.floats(0.01, 1.0), smooth=st.floats(0, 0.45))
def test_loss_falls_as_chosen_logp_rises(method, chosen, rejected, rise, beta, smooth):
    smooth = smooth if method == "robust" else 0.0  # cDPO/SimPO smoothing has a finite optimum
    ref = pl([-5.0], [-5.0], dtype=torch.float64)
    lo = run(method, pl([chosen], [rejected], dtype=torch.float64), ref, beta=beta,
             label_smoothing=smooth)[0]
    hi = run(method, pl([chosen + rise], [rejected], dtype=torch.float64), ref, beta=beta,
             label_smoothing=smooth)[0]
    assert hi.item() < lo.item()


@pytest.mark.parametrize("method", METHODS)
def test_empty_answers_and_certain_tokens_stay_finite(method):
    # counts 0 (a fully truncated answer) and log-probs exactly 0 (float32 log-softmax of a
    # confident token): no NaN/inf in losses, rewards or gradients
    chosen = torch.tensor([0.0, 0.0, -3.0, 0.0], requires_grad=True)
    rejected = torch.tensor([0.0, -2.0, 0.0, 0.0], requires_grad=True)
    policy = PairLogps(chosen, rejected, torch.tensor([0, 0, 3, 4]), torch.tensor([0, 2, 0, 1]))
    ref = pl([0.0, -1.0, -1.0, 0.0], [0.0, -1.0, -1.0, 0.0], nc=[0, 0, 3, 4], nr=[0, 2, 0, 1])
    losses, c, r = run(method, policy, ref, sft_weight=0.5)
    losses.sum().backward()
    for t in (losses, c, r, chosen.grad, rejected.grad):
        assert torch.isfinite(t).all(), (method, t)


@pytest.mark.parametrize("method", METHODS)
def test_gradients(method):
    pol, ref = random_pairs(random.Random(7), 5)
    smooth = 0.1 if method in {"dpo", "robust", "simpo"} else 0.0
    cfg = PreferenceLossConfig(method=method, beta=0.3, label_smoothing=smooth, sft_weight=0.2)

    def f(pc, pr, rc, rr):
        return preference_losses(cfg, PairLogps(pc, pr, pol.chosen_tokens, pol.rejected_tokens),
                                 PairLogps(rc, rr, ref.chosen_tokens, ref.rejected_tokens))[0]

    args = [t.clone().requires_grad_() for t in (pol.chosen, pol.rejected, ref.chosen, ref.rejected)]
    assert torch.autograd.gradcheck(f, args)


def test_low_precision_inputs_are_computed_in_float32():
    policy = pl([-0.5, -10.0, -1.0], [-0.1, -30.0, -21.0], dtype=torch.bfloat16)
    ref = pl([-0.5, -10.0, -0.0625], [-0.1, -20.0, -0.0625], dtype=torch.bfloat16)
    losses = run("dpo", policy, ref)[0]
    assert losses.dtype == torch.float32
    close(losses, [LOG2, -math.log(1 / (1 + math.exp(-1.0))), -math.log(1 / (1 + math.exp(-2.0)))])


# ---- errors --------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", sorted(NEEDS_REFERENCE))
def test_reference_method_without_reference_is_a_clear_error(method):
    with pytest.raises(ValueError, match="needs reference"):
        run(method, pl([-1.0], [-2.0]), None)


def test_reference_free_methods_need_no_reference():
    for method in ("simpo", "orpo"):
        assert run(method, pl([-1.0], [-2.0]), None)[0].shape == (1,)


@pytest.mark.parametrize("kw,match", [
    ({"method": "kto"}, "not a preference method"),
    ({"beta": 0.0}, "beta"),
    ({"label_smoothing": 0.5, "method": "robust"}, r"\[0, 0.5\)"),
    ({"label_smoothing": 0.1, "method": "ipo"}, "no effect"),
    ({"sft_weight": -1.0}, "sft-weight"),
])
def test_config_errors(kw, match):
    with pytest.raises(ConfigError, match=match):
        PreferenceLossConfig(**kw)


def test_mismatched_shapes_are_rejected():
    bad = PairLogps(torch.zeros(3), torch.zeros(2), torch.ones(3), torch.ones(3))
    with pytest.raises(ValueError, match=r"shape \[P\]"):
        run("simpo", bad)


# ---- metrics -------------------------------------------------------------------------------------

def test_metrics_names_and_values():
    policy = pl([-0.5, -10.0, -1.0], [-0.1, -30.0, -21.0])
    ref = pl([-0.5, -10.1, -0.1], [-0.1, -20.1, -0.1])
    m = preference_metrics(*run("dpo", policy, ref), policy, prefix="eval_")
    # rewards chosen [0, .01, -.09], rejected [0, -.99, -2.09]: wins on pairs 1 and 2
    assert m == pytest.approx({
        "eval_loss": (0.693147 + 0.313262 + 0.126928) / 3,
        "eval_rewards/chosen": -0.08 / 3, "eval_rewards/rejected": -3.08 / 3,
        "eval_rewards/accuracies": 2 / 3, "eval_rewards/margins": 3.0 / 3,
        "eval_logps/chosen": -11.5 / 3, "eval_logps/rejected": -51.1 / 3}, abs=1e-5)


def test_metric_sums_accumulate_exactly_across_splits():
    pol, ref = random_pairs(random.Random(3), 10)
    cfg = PreferenceLossConfig(method="ipo")
    whole = preference_metrics(*preference_losses(cfg, pol, ref), pol)

    def part(t, s):
        return t[s]

    total: dict[str, torch.Tensor] = defaultdict(lambda: torch.zeros((), dtype=torch.float64))
    for s in (slice(0, 3), slice(3, 4), slice(4, 10)):  # uneven micro-batches
        p = PairLogps(*(part(t, s) for t in (pol.chosen, pol.rejected, pol.chosen_tokens,
                                             pol.rejected_tokens)))
        q = PairLogps(*(part(t, s) for t in (ref.chosen, ref.rejected, ref.chosen_tokens,
                                             ref.rejected_tokens)))
        for k, v in metric_sums(*preference_losses(cfg, p, q), p).items():
            total[k] = total[k] + v
    assert metrics_from_sums(total) == pytest.approx(whole, rel=1e-12)
    assert total["pairs"].item() == 10
    assert metrics_from_sums({"pairs": torch.tensor(0.0)}) == {}
