"""Golden test: `train --method dpo` against TRL's DPOTrainer on the same tiny model and pairs.

Same ids: TRL gets the alpaca prompt already rendered as its "prompt" string and the answers as
text; it appends the EOS text and tokenizes prompt and prompt + answer (BOS from the tokenizer),
we encode the prompt and append EOS by id. The prompt ends in "\\n", a pre-tokenizer boundary, so
no BPE merge crosses it and both give the same ids (checked first). Same training: fp32 (TRL's
DPOConfig defaults to bf16 autocast, even on CPU), dropout off, reference = the initial model with precomputed log-probs, sigmoid loss with beta 0.1, AdamW
(fused, betas 0.9/0.999, eps 1e-8, no weight decay), constant lr 1e-3 without warmup, clipping at
1.0, one batch of all 8 pairs per step (so shuffling cannot differ). Skips without TRL."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from instruct_tune.config import TrainConfig
from instruct_tune.data.templates import get_template
from instruct_tune.train.run import train
from tests.train.conftest import load_weights, metrics
from tests.train.test_preference_train import tokenized_pairs, write_pairs

PAIRS, STEPS, LR, BETA = 8, 5, 1e-3, 0.1


def trl_dpo(model_dir, rows: list[dict], out) -> tuple[object, list[float]]:
    """TRL's DPOTrainer after STEPS steps, and the loss of each step (before its update)."""
    trl = pytest.importorskip("trl")
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    losses: list[float] = []

    class Recording(trl.DPOTrainer):
        def compute_loss(self, *args, **kwargs):
            loss = super().compute_loss(*args, **kwargs)
            losses.append(loss.item())
            return loss

    try:
        args = trl.DPOConfig(
            output_dir=str(out), per_device_train_batch_size=PAIRS, max_steps=STEPS,
            learning_rate=LR, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
            max_grad_norm=1.0, optim="adamw_torch_fused", beta=BETA, loss_type=["sigmoid"],
            precompute_ref_log_probs=True, disable_dropout=True, use_cpu=True, seed=0,
            bf16=False, fp16=False,  # DPOConfig defaults to bf16 autocast
            logging_steps=1, save_strategy="no", report_to="none", dataloader_num_workers=0)
        trainer = Recording(
            model=AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32),
            args=args, train_dataset=Dataset.from_list(rows),
            processing_class=AutoTokenizer.from_pretrained(model_dir))
    except TypeError as e:  # another TRL's DPOConfig/DPOTrainer signature
        pytest.skip(f"TRL {trl.__version__}: DPOTrainer is not set up this way ({e})")
    trainer.train()
    return trainer, losses


def our_cfg(model_dir, data, tmp_path):
    """`train --method dpo` set up as TRL's run above."""
    return TrainConfig(model=str(model_dir), data=str(data), out=str(tmp_path / "ours"),
                       cache_dir=str(tmp_path / "cache"), quiet=True, method="dpo", beta=BETA,
                       batch_size=PAIRS, max_steps=STEPS, lr=LR, schedule="constant",
                       warmup_ratio=0.0, weight_decay=0.0, max_grad_norm=1.0, seed=0,
                       log_every=1, save_every=0)


def test_dpo_matches_trl_dpo_trainer(model_dirs, tmp_path):
    pytest.importorskip("trl")
    model_dir = model_dirs["llama"]
    data = write_pairs(tmp_path / "pairs.jsonl", PAIRS, seed=5, max_words=8, answer_words=5)
    alpaca = get_template("alpaca")
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    trl_rows = [{"prompt": alpaca.render_prompt([{"role": "user", "content": r["prompt"]}]),
                 "chosen": r["chosen"], "rejected": r["rejected"]} for r in rows]
    trainer, trl_losses = trl_dpo(model_dir, trl_rows, tmp_path / "trl")

    # the same token ids, pair by pair
    ours = tokenized_pairs(data, model_dir)
    ds = trainer.train_dataset
    for i, p in enumerate(ours):
        assert (ds[i]["prompt_ids"], ds[i]["chosen_ids"], ds[i]["rejected_ids"]) == (
            p.prompt_ids, p.chosen_ids, p.rejected_ids), f"pair {i} tokenized differently"

    final = train(our_cfg(model_dir, data, tmp_path))
    # per-pair reference log-probs: our prefix-shared pass (as cached by the run) against TRL's
    (cached,) = (tmp_path / "cache").rglob("reference/*.npy")
    theirs = np.stack([np.array(ds["ref_chosen_logps"]), np.array(ds["ref_rejected_logps"])], 1)
    logp_diff = np.abs(np.load(cached) - theirs).max()
    assert logp_diff <= 1e-5, logp_diff

    # the loss of every step, the 5th after four updates, and the weights after five
    losses = [r["loss"] for r in metrics(final.parent)]
    assert len(losses) == len(trl_losses) == STEPS
    assert abs(losses[0] - math.log(2)) <= 1e-6
    loss_diff = max(abs(a - b) for a, b in zip(losses, trl_losses, strict=True))
    assert loss_diff <= 1e-4, (losses, trl_losses)
    assert losses[-1] < losses[0] - 0.02  # both trained, not merely stood still together
    weights = load_weights(final)
    trl_weights = trainer.model.state_dict()
    weight_diff = max(float((weights[k] - trl_weights[k]).abs().max()) for k in weights)
    assert weight_diff <= 1e-4, weight_diff

