"""The training loop: loss normalization over the whole step, stop conditions, NaN handling,
and what a finished run leaves behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from instruct_tune.config import TrainConfig
from instruct_tune.data.encode import trained_count
from instruct_tune.data.pack import collate
from instruct_tune.data.records import Record
from instruct_tune.data.templates import Template, get_template
from instruct_tune.data.tokenize import build_examples, stop_token_ids
from instruct_tune.models import load_model, load_tokenizer
from instruct_tune.train.loop import NonFiniteLossError, forward_backward
from instruct_tune.train.run import train
from tests.train.conftest import metrics


def _grads(model) -> dict[str, torch.Tensor]:
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return grads


def test_accumulation_matches_one_big_batch(model_dirs):
    """batch 8 x accum 1 and batch 2 x accum 4 give the same gradients, with rows of 3 to ~300
    tokens; averaging per micro-batch (the classic bug) would not."""
    from accelerate import Accelerator

    tok = load_tokenizer(model_dirs["llama"])
    words = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
    records = [Record.alpaca(" ".join(words[: 1 + i % 3]), " ".join(words * (1 + 7 * (i % 4) ** 2)))
               for i in range(8)]
    examples = build_examples(records, tok, get_template("alpaca"), cache_dir="none").examples
    lengths = [len(e.input_ids) for e in examples]
    assert max(lengths) > 10 * min(lengths)
    n = sum(trained_count(e.labels) for e in examples)
    model = load_model(model_dirs["llama"]).train()
    acc = Accelerator(cpu=True)
    pad = tok.pad_token_id

    def batch(rows):
        return collate(rows, pad, max_length=2048), 1.0

    forward_backward(acc, model, [batch(examples)], scale=1 / n)
    big = _grads(model)
    # Pair short with long rows so micro-batches hold very different token counts.
    micro = [batch([examples[i], examples[j]]) for i, j in ((0, 1), (2, 3), (4, 5), (6, 7))]
    forward_backward(acc, model, micro, scale=1 / n)
    accum = _grads(model)
    scale = max(float(g.abs().max()) for g in big.values())
    worst = max(float((big[k] - accum[k]).abs().max()) for k in big) / scale
    assert worst < 1e-5

    for b in micro:  # per-micro-batch mean, then mean over micro-batches
        forward_backward(acc, model, [b], scale=1 / (b[0].num_trained * len(micro)))
    naive = _grads(model)
    assert max(float((big[k] - naive[k]).abs().max()) for k in big) / scale > 1e-3


def test_run_writes_a_loadable_model_and_learns(make_cfg):
    """A short full fine-tune: loss falls, metrics.jsonl has every field, final/ loads with plain
    transformers and stops on the trained stop token; config.yaml re-creates the config."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    final = train(make_cfg("gpt2", max_steps=24, lr=3e-3, eval_split=0.1, eval_every=12))
    rows = metrics(final.parent)
    assert [r["step"] for r in rows] == list(range(1, 25))
    for key in ("step", "loss", "eval_loss", "lr", "grad_norm", "tokens_per_s", "trained_tokens",
                "elapsed"):
        assert key in rows[0]
    assert [r["step"] for r in rows if r["eval_loss"] is not None] == [12, 24]
    assert sum(r["loss"] for r in rows[-4:]) < sum(r["loss"] for r in rows[:4]) - 0.5
    assert rows[-1]["trained_tokens"] > rows[0]["trained_tokens"] > 0

    model = AutoModelForCausalLM.from_pretrained(final)
    tok = AutoTokenizer.from_pretrained(final)
    template = Template.load(final)
    assert template is not None and template.name == "alpaca"
    stops = stop_token_ids(tok, template)
    gen = GenerationConfig.from_pretrained(final)
    assert set(stops) <= set(gen.eos_token_id)
    assert model(torch.tensor([[1, 2, 3]])).logits.shape[-1] >= len(tok)
    saved = yaml.safe_load((final.parent / "config.yaml").read_text())
    assert TrainConfig(**saved).lr == 3e-3 and saved["eval_split"] == 0.1


def test_stop_conditions(make_cfg):
    """--epochs (fractions too), --max-steps and --max-time: whichever comes first; the final
    model is saved in every case."""
    half = train(make_cfg(out=None, max_steps=None, epochs=0.5, batch_size=4, grad_accum=2,
                          save_every=0))
    # 40 rows / 4 = 10 micro-batches per epoch; half an epoch = 5 micro-batches = 3 steps.
    assert [r["step"] for r in metrics(half.parent)][-1] == 3
    assert (half / "model.safetensors").is_file()

    cfg = make_cfg(out=half.parent.parent / "timed", max_steps=None, epochs=1000, max_time="2s",
                   save_every=0)
    final = train(cfg)
    rows = metrics(final.parent)
    assert 1 <= rows[-1]["step"] < 10_000
    assert (final / "model.safetensors").is_file()
    ckpts = sorted(p.name for p in (final.parent / "checkpoints").iterdir())
    assert ckpts == [f"step-{rows[-1]['step']}"]  # the time stop checkpoints too


def test_nonfinite_loss_stops_with_step_and_checkpoint(make_cfg, monkeypatch):
    from instruct_tune.train import objective

    real = objective.loss_sum
    calls = {"n": 0}

    def poisoned(model, batch):
        calls["n"] += 1
        loss, n = real(model, batch)
        return (loss * float("nan"), n) if calls["n"] == 5 else (loss, n)

    monkeypatch.setattr(objective, "loss_sum", poisoned)
    cfg = make_cfg(max_steps=8, save_every=2)
    with pytest.raises(NonFiniteLossError) as e:
        train(cfg)
    msg = str(e.value)
    assert "step 5" in msg and "step-4" in msg and "--skip-nonfinite" in msg

    calls["n"] = 0
    final = train(make_cfg(out=cfg.out + "-skip", max_steps=8, save_every=2, skip_nonfinite=True))
    rows = metrics(final.parent)
    assert rows[-1]["step"] == 8 and rows[-1]["skipped_steps"] == 1
    assert all(torch.isfinite(t).all() for t in _weights(final))


def _weights(final):
    from tests.train.conftest import load_weights

    return list(load_weights(final).values())


@pytest.mark.parametrize("packing, checkpointing, precision", [
    (True, False, "bf16"), (False, True, "fp32"), (True, True, "fp32")])
def test_packing_gradient_checkpointing_and_precision(make_cfg, packing, checkpointing, precision):
    """Packed batches, gradient checkpointing and bf16 autocast train to finite weights."""
    final = train(make_cfg("qwen2", out=None, packing=packing, max_length=256, batch_size=2,
                           gradient_checkpointing=checkpointing, precision=precision,
                           max_steps=3, save_every=0))
    rows = metrics(final.parent)
    assert len(rows) == 3 and all(r["loss"] == r["loss"] for r in rows)
    assert all(torch.isfinite(t).all() for t in _weights(final))
    assert json.loads((final / "config.json").read_text())["use_cache"] is not False


def test_generation_eval_runs_on_final_with_eval_data(make_cfg, eval_file, monkeypatch):
    """With --eval-data the train command runs the before/after generation eval on final/ and its
    report lands next to it (the eval itself is stubbed: it is tested in tests/evaluate)."""
    from instruct_tune.evaluate import compare, report

    seen = {}

    def fake_evaluate(model_dir, records, **kw):
        seen.update(model_dir=model_dir, n=len(records), compare=kw.get("compare"))
        return {"tuned": {"score": 1.0}}

    monkeypatch.setattr(compare, "evaluate", fake_evaluate)
    monkeypatch.setattr(report, "print_report", lambda r: None)
    from instruct_tune.commands.train import run as train_command

    cfg = make_cfg(max_steps=2, save_every=0, eval_data=str(eval_file))
    assert train_command(cfg) == 0
    final = Path(cfg.out) / "final"
    assert seen == {"model_dir": final, "n": 6, "compare": cfg.model}
    assert json.loads((final.parent / "eval.json").read_text()) == {"tuned": {"score": 1.0}}
    assert metrics(final.parent)[-1]["eval_loss"] is not None


def test_final_chat_template_prompts_exactly_as_training(make_cfg):
    """Plain transformers' apply_chat_template on final/ gives the ids training used, also for a
    tokenizer that adds BOS (apply_chat_template itself adds no special tokens)."""
    from transformers import AutoTokenizer

    from instruct_tune.data.records import Message
    from instruct_tune.data.tokenize import encode_prompt

    final = train(make_cfg("llama", max_steps=1))
    tok = AutoTokenizer.from_pretrained(final)
    template = Template.load(final)
    for msgs in ([Message("user", "Name a color.")], [Message("user", "Sort these.", "b a c")]):
        plain = [{"role": m.role, "content": m.content, **({"input": m.input} if m.input else {})}
                 for m in msgs]
        ids = tok.apply_chat_template(plain, add_generation_prompt=True, tokenize=True,
                                      return_dict=False)
        assert list(ids) == encode_prompt(msgs, tok, template)
        assert ids[0] == tok.bos_token_id


def test_max_length_below_every_row_says_what_length_is_needed(make_cfg, model_dirs, alpaca_file):
    from instruct_tune.data.load import load_records
    from instruct_tune.errors import ConfigError

    tok = load_tokenizer(model_dirs["llama"])
    full = build_examples(load_records(alpaca_file), tok, get_template("alpaca", tok),
                          max_length=10**6, cache_dir="none")
    shortest = min(len(e.input_ids) for e in full.examples)
    with pytest.raises(ConfigError, match=rf"All {len(full.examples)} train rows are longer than "
                       rf"--max-length 8 tokens: the shortest needs {shortest},"):
        train(make_cfg(max_length=8))


def test_left_truncation_says_how_much_prompt_was_left(make_cfg, capsys):
    """Rows cut to --max-length by --truncation left are reported, with a warning when the cut
    took (nearly) the whole instruction."""
    train(make_cfg(max_length=24, truncation="left", max_steps=1, save_every=0))
    err = capsys.readouterr().err
    assert "--truncation left: up to" in err and "cut to --max-length 24" in err
    assert "instruction is mostly or entirely gone" in err
    train(make_cfg(out=None, max_length=512, truncation="left", max_steps=1, save_every=0,
                   overwrite=True))
    assert "--truncation left" not in capsys.readouterr().err  # nothing was cut
