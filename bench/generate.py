"""Batched eval generation vs one-at-a-time `model.generate`, on the same model and prompts.

    python bench/generate.py [--n 64] [--max-new-tokens 48] [--batch-size 16] [--threads 1] [--repeat 2]

The model is a tiny-but-not-trivial Llama (hidden 256, 4 layers, 3.2M parameters), randomly
initialised with its EOS output row scaled up so that greedy outputs stop at different lengths
(0 to the limit; about half stop), as a tuned model's do. A plain random model never stops, which
would flatter batching: every row would run to the limit on both sides.
Both sides use greedy decoding, the same stop ids and the same prompt ids; the baseline is what a
user writes by hand: one `model.generate(ids, max_new_tokens=..., eos_token_id=stop_ids)` per row.
Prints each time and a ratio line, plus how many outputs agree token for token.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from instruct_tune.data.records import Record  # noqa: E402
from instruct_tune.data.templates import get_template  # noqa: E402
from instruct_tune.evaluate.generate import Generator  # noqa: E402
from tests import tiny  # noqa: E402


def rows(n: int, seed: int) -> list[Record]:
    """'repeat the first k words' tasks with prompts of 4-40 words."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = [rng.choice(tiny.WORDS) for _ in range(rng.randint(4, 40))]
        k = rng.randint(1, min(24, len(words)))
        out.append(Record.alpaca(f"Repeat the first {k} words: " + " ".join(words),
                                 " ".join(words[:k])))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--eos-scale", type=float, default=3.0)
    ap.add_argument("--repeat", type=int, default=2, help="best of N timings for each side")
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
    # Scaling EOS's output row makes greedy decoding stop after a prompt-dependent number of
    # tokens (about half the rows within the limit), like a partly tuned model.
    model.lm_head.weight.data[tok.eos_token_id] *= args.eos_scale

    gen = Generator(model, tok, template, name="bench-llama", device="cpu")
    prompts = gen.encode_many([r.prompt_messages() for r in rows(args.n, seed=2)])
    gen.generate(prompts[:2], max_new_tokens=4)  # warm-up, for both sides

    def one_at_a_time() -> list[list[int]]:
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
        return base

    # Alternate the two and keep each one's best: the machine may be shared, so noise is one-sided.
    # Process CPU time is measured too; with one thread it is the wall time of an idle machine.
    wall = {"ours": float("inf"), "base": float("inf")}
    cpu = dict(wall)
    for _ in range(args.repeat):
        for side in ("ours", "base"):
            w0, c0 = time.perf_counter(), time.process_time()
            if side == "ours":
                ours = gen.generate(prompts, max_new_tokens=args.max_new_tokens,
                                    batch_size=args.batch_size)
            else:
                base = one_at_a_time()
            wall[side] = min(wall[side], time.perf_counter() - w0)
            cpu[side] = min(cpu[side], time.process_time() - c0)

    same = sum(o.token_ids == b for o, b in zip(ours, base, strict=True))
    lengths = sorted(len(b) for b in base)
    stopped = sum(o.stopped for o in ours)
    tokens = sum(len(b) for b in base)
    print(f"{args.n} prompts ({min(map(len, prompts))}-{max(map(len, prompts))} tokens), "
          f"max {args.max_new_tokens} new tokens, {stopped}/{args.n} stopped, output lengths "
          f"{lengths[0]}-{lengths[-1]} (median {lengths[len(lengths) // 2]}), {args.threads} thread(s)")
    for side, label in (("base", "one-at-a-time model.generate"),
                        ("ours", f"instruct-tune batched (batch {args.batch_size})")):
        print(f"{label}: wall {wall[side]:.2f}s, cpu {cpu[side]:.2f}s ({tokens / wall[side]:.0f} tok/s)")
    print(f"identical outputs: {same}/{args.n}")
    print(f"RATIO batched eval generation speedup: {wall['base'] / wall['ours']:.2f}x wall-clock, "
          f"{cpu['base'] / cpu['ours']:.2f}x cpu time (target >= 4x)")


if __name__ == "__main__":
    main()
