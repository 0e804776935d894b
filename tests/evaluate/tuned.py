"""Model directories shaped like the trainer's final/ (weights or adapter, tokenizer, template.json,
generation_config with every stop id), built in-process in about a second each.

`save_tuned` memorises a handful of records with a plain loop so the model really stops (and
answers exactly); the base model it starts from never stops. Shared by tests/evaluate and tests/serve.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from instruct_tune.data.records import Record
from instruct_tune.data.templates import get_template
from instruct_tune.data.tokenize import build_examples, stop_token_ids
from tests import tiny

RECORDS = [
    Record.alpaca("What is the capital of France?", "Paris", task="qa"),
    Record.alpaca("Count to three.", "one two three", task="count"),
    Record.alpaca("Say yes.", "yes", task="qa"),
    Record.alpaca("Name a color.", "red", task="qa"),
    Record.alpaca("Reverse the word.", "tac", input="cat", task="count"),
]


def write_jsonl(records: list[Record], path: Path) -> Path:
    rows = [{"instruction": r.instruction, "input": r.input, "output": r.output, **r.meta}
            for r in records]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _finish_dir(model, tokenizer, template, path: Path) -> Path:
    """Save like the trainer: weights, tokenizer, template.json, eos ids incl. the stop token."""
    stops = stop_token_ids(tokenizer, template)
    model.generation_config.eos_token_id = list(stops)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    template.save(path)
    return path


def save_base(path: Path, arch: str = "llama", template: str = "alpaca", eos: str | None = None,
              seed: int = 0) -> Path:
    """A random tiny model with a saved template. `eos` overrides the tokenizer's EOS token (to
    make the template's end-of-turn token differ from EOS, as on Qwen base models)."""
    tok = tiny.build_tokenizer(tiny.ARCH_TOKENIZER[arch])
    if eos is not None:
        tok.eos_token = eos
    model = tiny.build_model(arch, len(tok), seed=seed, bos_token_id=tok.bos_token_id,
                             eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return _finish_dir(model, tok, get_template(template, tok), path)


def save_tuned(base: Path, path: Path, records: list[Record] = RECORDS, steps: int = 60) -> Path:
    """`base` trained on `records` until it answers them exactly and stops."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from instruct_tune.data.templates import Template

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(base)
    template = Template.load(base)
    model = AutoModelForCausalLM.from_pretrained(base)
    ex = build_examples(records, tok, template, cache_dir="none").examples
    width = max(len(e) for e in ex)
    ids = torch.tensor([e.input_ids + [tok.pad_token_id] * (width - len(e)) for e in ex])
    labels = torch.tensor([e.labels + [-100] * (width - len(e)) for e in ex])
    mask = torch.tensor([[1] * len(e) + [0] * (width - len(e)) for e in ex])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad()
    return _finish_dir(model.eval(), tok, template, path)


def save_lora(base: Path, path: Path, seed: int = 0) -> Path:
    """A LoRA adapter on `base` with non-zero random B (so it changes the outputs), saved as the
    trainer does: adapter + tokenizer + template.json, base path absolute."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from instruct_tune.data.templates import Template

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                                  task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.5)
    peft_model.peft_config["default"].base_model_name_or_path = str(Path(base).resolve())
    peft_model.save_pretrained(path)
    AutoTokenizer.from_pretrained(base).save_pretrained(path)
    Template.load(base).save(path)
    return path
