"""`eval` on a preference file: log-probs of each answer, DPO rewards against the reference
(--compare), and the generation eval on the chosen answers, through the API and the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from instruct_tune.cli import main
from instruct_tune.config import TrainConfig
from instruct_tune.data.pair_tokenize import build_pairs
from instruct_tune.data.pairs import load_pairs
from instruct_tune.data.templates import Template
from instruct_tune.errors import ConfigError, DataError
from instruct_tune.evaluate.preference import evaluate_pairs, reward_metrics, score_pairs
from tests import tiny
from tests.evaluate import tuned

# Chosen: the answer the tuned model was trained on; rejected: another record's answer (two for
# the first prompts, so prompts repeat), so the tuned model prefers the chosen ones.
PAIRS = [{"instruction": r.instruction, "input": r.input, "chosen": r.output,
          "rejected": tuned.RECORDS[(i + k) % len(tuned.RECORDS)].output, "task": r.meta["task"]}
         for k in (1, 2) for i, r in enumerate(tuned.RECORDS) if k == 1 or i < 2]
SMALL = {"max_new_tokens": 8, "batch_size": 2}


@pytest.fixture(scope="module")
def pair_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    return path


@pytest.fixture(scope="module")
def pairs(pair_file):
    return load_pairs(pair_file).records


@pytest.fixture(scope="module")
def dpo_run(tuned_dir, pair_file, tmp_path_factory):
    """tuned_dir preference-tuned for a few steps on the pairs, evaluated on them at the end."""
    from instruct_tune.train.run import train

    out = tmp_path_factory.mktemp("dpo") / "run"
    cfg = TrainConfig(model=str(tuned_dir), data=str(pair_file), eval_data=str(pair_file),
                      method="dpo", beta=0.5, out=str(out), cache_dir="none", quiet=True,
                      max_steps=4, batch_size=4, lr=3e-3, warmup_ratio=0.0, seed=0, log_every=1)
    final = train(cfg)
    logged = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x]
    return final, [r for r in logged if r.get("eval_loss") is not None][-1]


def test_rewards_equal_what_training_logged(dpo_run, pairs, tuned_dir):
    """The eval's DPO loss and rewards on the eval pairs are those train logged for them at its
    last step: same reference, same log-probs, same formulas."""
    final, logged = dpo_run
    pref = evaluate_pairs(final, pairs, compare=tuned_dir, beta=0.5, **SMALL)["preference"]
    assert pref["n"] == len(PAIRS)
    for key in ("loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies",
                "rewards/margins", "logps/chosen", "logps/rejected"):
        assert pref[key] == pytest.approx(logged[f"eval_{key}"], abs=1e-4), key
    # Rows agree with the means, and the reference rows are the base model's own log-probs.
    rows = pref["rows"]
    margins = [0.5 * ((r["chosen_logp"] - r["ref_chosen_logp"]) - (r["rejected_logp"] - r["ref_rejected_logp"]))
               for r in rows]
    assert np.allclose(margins, [r["reward_margin"] for r in rows], atol=1e-4)
    assert pref["rewards/margins"] == pytest.approx(np.mean(margins), abs=1e-5)
    assert pref["base"]["logps/chosen"] == pytest.approx(np.mean([r["ref_chosen_logp"] for r in rows]))


def test_model_against_itself_is_the_start_of_dpo(pairs, tuned_dir):
    """Policy == reference: loss exactly log 2, every reward 0 (ties are not wins), and the log-prob
    metrics of both columns equal."""
    report = evaluate_pairs(tuned_dir, pairs, compare=tuned_dir, **SMALL)
    pref = report["preference"]
    assert pref["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert pref["rewards/accuracies"] == 0 and pref["rewards/margins"] == pytest.approx(0, abs=1e-6)
    for key in ("logps/chosen", "logps/rejected", "logps/margins", "logps/accuracies"):
        assert pref[key] == pytest.approx(pref["base"][key], abs=1e-6)
    # The tuned model was trained on the chosen answers: it prefers them all, and generates them.
    assert pref["logps/accuracies"] == 1.0
    assert report["exact_match"] == 1.0 and report["n"] == len(PAIRS)
    assert report["rows"][0]["reference"] == PAIRS[0]["chosen"]


def test_without_reference_only_the_models_own_preference(pairs, tuned_dir, base_dir):
    tuned_pref = evaluate_pairs(tuned_dir, pairs, **SMALL)["preference"]
    base_pref = evaluate_pairs(base_dir, pairs, **SMALL)["preference"]
    assert "base" not in tuned_pref and not any(k.startswith("rewards/") for k in tuned_pref)
    rows = tuned_pref["rows"]
    wins = [r["chosen_logp"] > r["rejected_logp"] for r in rows]
    per_token = [r["chosen_logp"] / r["chosen_tokens"] > r["rejected_logp"] / r["rejected_tokens"]
                 for r in rows]
    assert tuned_pref["logps/accuracies"] == np.mean(wins)
    assert tuned_pref["mean_logps/accuracies"] == np.mean(per_token)
    assert tuned_pref["logps/margins"] > base_pref["logps/margins"]  # tuning preferred the chosen


def test_score_pairs_equals_one_forward_per_answer(pairs, tuned_dir):
    """Batched, sorted by length and prefix-shared, each pair's scores come back in its place and
    equal log p(answer | prompt) from a plain forward of prompt + answer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tuned_dir)
    model = AutoModelForCausalLM.from_pretrained(tuned_dir).eval()
    ex = build_pairs(pairs, tok, Template.load(tuned_dir), cache_dir="none").examples
    got = score_pairs(model, ex, tok.pad_token_id, batch_size=3)
    for p, (c, r) in zip(ex, got, strict=True):
        for answer, value in ((p.chosen_ids, c), (p.rejected_ids, r)):
            ids = torch.tensor([p.prompt_ids + answer])
            with torch.no_grad():
                logp = torch.log_softmax(model(ids).logits[0, :-1].float(), -1)
            want = logp[len(p.prompt_ids) - 1:].gather(1, torch.tensor(answer)[:, None]).sum()
            assert value == pytest.approx(float(want), abs=1e-4)


def test_reward_metrics_hand_computed():
    """torchtune's published DPO example (beta 0.1): losses [0.6931, 0.3133, 0.1269]; rewards are
    beta * (policy - reference): chosen [0, 0.01, -0.09], rejected [0, -0.99, -2.09]."""
    policy = np.array([[-0.5, -0.1], [-10.0, -30.0], [-1.0, -21.0]])
    reference = np.array([[-0.5, -0.1], [-10.1, -20.1], [-0.1, -0.1]])
    metrics, margins = reward_metrics(policy, reference, np.ones((3, 2), dtype=np.int64), 0.1)
    assert metrics["loss"] == pytest.approx((0.6931 + 0.3133 + 0.1269) / 3, abs=1e-4)
    assert np.allclose(margins, [0.0, 1.0, 2.0], atol=1e-6)
    assert metrics["rewards/chosen"] == pytest.approx((0 + 0.01 - 0.09) / 3)
    assert metrics["rewards/rejected"] == pytest.approx((0 - 0.99 - 2.09) / 3)
    assert metrics["rewards/accuracies"] == pytest.approx(2 / 3)  # the tie is not a win
    assert metrics["rewards/margins"] == pytest.approx(1.0)


def test_cli_json_piped_tables_and_out(dpo_run, pair_file, tuned_dir, tmp_path, capsys):
    final, _ = dpo_run
    out = tmp_path / "r.json"
    args = ["eval", str(final), "--data", str(pair_file), "--compare", str(tuned_dir),
            "--beta", "0.5", "--max-new-tokens", "8"]
    assert main([*args, "--json", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text())
    assert {"stop_rate", "exact_match", "base", "delta", "preference"} <= set(printed)
    assert printed["preference"]["beta"] == 0.5 and len(printed["preference"]["rows"]) == len(PAIRS)

    assert main(args) == 0
    text = capsys.readouterr().out
    assert "base (reference)" in text and "reward accuracy" in text and "DPO loss at beta 0.5" in text
    assert "generation, scored against the chosen answers" in text and "exact match" in text

    assert main(["eval", str(final), "--data", str(pair_file), "--max-new-tokens", "4"]) == 0
    captured = capsys.readouterr()
    assert "rewards need a reference" in captured.out and "reward accuracy" not in captured.out


def test_refusals(pair_file, pairs, tuned_dir, model_dirs, capsys):
    assert main(["eval", str(tuned_dir), "--data", str(pair_file), "--compare", str(tuned_dir),
                 "--few-shot", "2"]) == 2
    assert "--few-shot" in capsys.readouterr().err
    assert main(["eval", str(tuned_dir), "--data", str(pair_file), "--beta", "0"]) == 2
    assert "--beta must be > 0" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="another tokenizer"):  # gpt2's vocabulary, not llama's
        evaluate_pairs(tuned_dir, pairs, compare=model_dirs["gpt2"], **SMALL)


def test_a_prompt_over_the_context_is_refused_before_any_scoring(pair_file, tuned_dir, tmp_path,
                                                                monkeypatch):
    """Without --skip-invalid the generation part refuses the row (file:line), so nothing is
    scored first only to be thrown away; with it the row is left out of both parts."""
    import instruct_tune.evaluate.preference as preference

    long = dict(PAIRS[0], instruction=" ".join(tiny.WORDS * 40))  # far past the 512-token context
    path = tmp_path / "long.jsonl"
    path.write_text(pair_file.read_text() + json.dumps(long) + "\n")
    with_long = load_pairs(path).records
    scored = []
    monkeypatch.setattr(preference, "score_pairs",
                        lambda *a, **k: scored.append(1) or score_pairs(*a, **k))
    with pytest.raises(DataError, match=f"long.jsonl:{len(PAIRS) + 1}"):
        evaluate_pairs(tuned_dir, with_long, compare=tuned_dir, **SMALL)
    assert scored == []
    report = evaluate_pairs(tuned_dir, with_long, compare=tuned_dir, skip_invalid=True, **SMALL)
    assert report["preference"]["n"] == report["n"] == len(PAIRS)
    assert report["preference"]["not_scored"] == 1


def test_train_command_writes_the_preference_eval(tuned_dir, pair_file, tmp_path):
    """`train --method dpo --eval-data PAIRS` ends with this eval against the starting model,
    at the run's --beta, in OUT/eval.json; its loss is the one the last eval logged."""
    from instruct_tune.commands.train import run as train_command

    cfg = TrainConfig(model=str(tuned_dir), data=str(pair_file), eval_data=str(pair_file),
                      method="dpo", beta=0.3, out=str(tmp_path / "run"), cache_dir="none",
                      quiet=True, max_steps=2, batch_size=4, lr=3e-3, warmup_ratio=0.0,
                      eval_samples=0, eval_max_new_tokens=4)
    assert train_command(cfg) == 0
    report = json.loads((tmp_path / "run" / "eval.json").read_text())
    logged = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    pref = report["preference"]
    assert pref["beta"] == 0.3 and pref["base"]["model"] == str(tuned_dir)
    assert pref["loss"] == pytest.approx(logged[-1]["eval_loss"], abs=1e-4)
    assert report["n"] == len(PAIRS) and "stop_rate" in report["base"]
