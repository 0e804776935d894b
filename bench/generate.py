"""Batched eval generation vs one-at-a-time `model.generate`, on the same model and prompts.

    python bench/generate.py [--n 64] [--max-new-tokens 48] [--batch-size 16] [--threads 1]

The model is a tiny-but-not-trivial Llama (hidden 256, 4 layers) briefly tuned in-process on
synthetic alpaca rows whose replies have 1-24 words and end in EOS, so that, as with a real tuned
model, outputs stop at different lengths (a random model never stops, which flatters batching).
Both sides use greedy decoding, the same stop ids and the same prompt ids; the baseline is what a
user writes by hand: one `model.generate(ids, max_new_tokens=..., eos_token_id=stop_ids)` per row.
Prints each time and a ratio line, plus how many outputs agree token for token.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from instruct_tune.data.records import Record  # noqa: E402
from instruct_tune.data.templates import get_template  # noqa: E402
from instruct_tune.data.tokenize import build_examples  # noqa: E402
from instruct_tune.evaluate.generate import Generator  # noqa: E402
from tests import tiny  # noqa: E402


def rows(n: int, seed: int) -> list[Record]:
    """'repeat the first k words' tasks: prompts of 4-40 words, replies of 1-24 words."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = [rng.choice(tiny.WORDS) for _ in range(rng.randint(4, 40))]
        k = rng.randint(1, min(24, len(words)))
        out.append(Record.alpaca(f"Repeat the first {k} words: " + " ".join(words),
                                 " ".join(words[:k])))
    return out


def tune(model, tokenizer, template, steps: int, seed: int) -> None:
    """A few hundred plain AdamW steps: enough for the model to learn to stop, at varied lengths."""
    examples = build_examples(rows(512, seed), tokenizer, template, cache_dir="none").examples
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    rng = random.Random(seed)
    model.train()
    for _ in range(steps):
        batch = rng.sample(examples, 16)
        width = max(len(e.input_ids) for e in batch)
        ids = torch.tensor([e.input_ids + [0] * (width - len(e)) for e in batch])
        labels = torch.tensor([e.labels + [-100] * (width - len(e)) for e in batch])
        mask = torch.tensor([[1] * len(e) + [0] * (width - len(e)) for e in batch])
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--train-steps", type=int, default=150)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    tok = tiny.build_tokenizer("llama")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                      num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=512,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    model = LlamaForCausalLM(cfg).float()
    template = get_template("alpaca")
    t0 = time.perf_counter()
    tune(model, tok, template, args.train_steps, seed=1)
    print(f"tuned {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M-parameter llama for "
          f"{args.train_steps} steps in {time.perf_counter() - t0:.1f}s")

    gen = Generator(model, tok, template, name="bench-llama", device="cpu")
    prompts = gen.encode_many([r.prompt_messages() for r in rows(args.n, seed=2)])
    gen.generate(prompts[:2], max_new_tokens=4)  # warm-up, for both sides

    t0 = time.perf_counter()
    ours = gen.generate(prompts, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    t_ours = time.perf_counter() - t0

    t0 = time.perf_counter()
    base = []
    with torch.inference_mode():
        for p in prompts:
            ids = torch.tensor([p])
            out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                 max_new_tokens=args.max_new_tokens, eos_token_id=gen.stop_ids,
                                 pad_token_id=gen.pad_id)
            new = out[0, len(p):].tolist()
            stop = next((i for i, t in enumerate(new) if t in gen.stop_ids), len(new))
            base.append(new[:stop])
    t_base = time.perf_counter() - t0

    same = sum(o.token_ids == b for o, b in zip(ours, base, strict=True))
    lengths = sorted(len(b) for b in base)
    stopped = sum(o.stopped for o in ours)
    tokens = sum(len(b) for b in base)
    print(f"{args.n} prompts ({min(map(len, prompts))}-{max(map(len, prompts))} tokens), "
          f"max {args.max_new_tokens} new tokens, {stopped}/{args.n} stopped, output lengths "
          f"{lengths[0]}-{lengths[-1]} (median {lengths[len(lengths) // 2]}), {args.threads} thread(s)")
    print(f"one-at-a-time model.generate: {t_base:.2f}s ({tokens / t_base:.0f} tok/s)")
    print(f"instruct-tune batched (batch {args.batch_size}): {t_ours:.2f}s ({tokens / t_ours:.0f} tok/s)")
    print(f"identical outputs: {same}/{args.n}")
    print(f"RATIO batched eval generation speedup: {t_base / t_ours:.2f}x (target >= 4x)")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory():
        main()
