"""Peak memory of one training step (forward + backward) with long prompts as the vocabulary
grows: instruct-tune's loss (head only on labelled positions, chunked) vs the plain Hugging Face
`model(..., labels=...)` loss, which materializes [batch x tokens x vocab] logits.

It also prints the wall time of a step for both (interleaved in one process, best of 3 after a
warm-up). Each memory measurement runs in a fresh subprocess so allocator caches of one run
cannot hide the next one's peak. On CPU the number is the rise of peak RSS over the RSS just before the step; on a
GPU it is torch.cuda.max_memory_allocated over the allocation before the step.

    python bench/logits_memory.py                       # vocab 32k, 64k, 128k
    python bench/logits_memory.py --vocabs 32000 --prompt 500
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _setup(vocab: int, prompt: int, response: int, batch: int, device: str):
    """A hidden-256, 4-layer Llama and one padded batch; returns {impl: step} where a step is
    forward + backward returning the summed loss."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from instruct_tune.data.pack import Batch
    from instruct_tune.train.loss import loss_sum

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=256, intermediate_size=768,
                      num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4,
                      max_position_embeddings=prompt + response + 8, tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg).to(device)
    T = prompt + response
    ids = torch.randint(0, vocab, (batch, T), device=device)
    labels = ids.clone()
    labels[:, :prompt] = -100
    b = Batch(input_ids=ids, labels=labels,
              position_ids=torch.arange(T, device=device).expand(batch, T),
              padding_mask=torch.ones_like(ids), num_trained=batch * response,
              num_tokens=batch * T, packed=False)

    def ours():
        loss = loss_sum(model, b)[0]
        loss.backward()
        return loss

    def hf():
        loss = model(input_ids=ids, attention_mask=b.padding_mask, labels=labels).loss
        loss = loss * b.num_trained
        loss.backward()
        return loss

    return model, {"hf": hf, "ours": ours}


def measure(impl: str, *shape) -> dict:
    """Peak memory rise (MiB) of one training step in this (fresh) process."""
    import torch

    device = shape[-1]
    model, steps = _setup(*shape)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = _rss_mib()
    loss = steps[impl]()
    if device == "cuda":
        torch.cuda.synchronize()
        peak = (torch.cuda.max_memory_allocated() - before) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
    return {"impl": impl, "peak_mib": round(peak, 1), "loss": float(loss)}


def time_both(*shape) -> dict:
    """Wall time of a training step, ours vs HF, interleaved in one process (shared machines
    are noisy: interleaving exposes both to the same load); best of 3 after a warm-up."""
    import torch

    model, steps = _setup(*shape)
    times: dict[str, list[float]] = {k: [] for k in steps}
    for rep in range(4):
        for name, step in steps.items():
            model.zero_grad(set_to_none=True)
            start = time.perf_counter()
            step()
            if shape[-1] == "cuda":
                torch.cuda.synchronize()
            if rep:
                times[name].append(time.perf_counter() - start)
    return {k: min(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vocabs", type=int, nargs="+", default=[32_000, 64_000, 128_000])
    ap.add_argument("--prompt", type=int, default=1500, help="prompt tokens per row (unlabelled)")
    ap.add_argument("--response", type=int, default=100, help="labelled tokens per row")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--_child", nargs=2, metavar=("IMPL", "VOCAB"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args._child:
        import torch

        torch.set_num_threads(args.threads)
        impl, vocab = args._child
        shape = (int(vocab), args.prompt, args.response, args.batch, args.device)
        print(json.dumps(time_both(*shape) if impl == "time" else measure(impl, *shape)))
        return
    print(f"one training step, batch {args.batch} x ({args.prompt} prompt + {args.response} "
          f"labelled tokens), llama hidden 256 x 4 layers, device {args.device}")
    print(f"{'vocab':>8} {'HF labels= (MiB)':>17} {'ours (MiB)':>11} {'HF/ours':>8} "
          f"{'HF step (s)':>12} {'ours step (s)':>14} {'speed-up':>9} {'loss diff':>10}")
    ratios, speed = [], []
    for vocab in args.vocabs:
        res = {}
        for impl in ("hf", "ours", "time"):
            cmd = [sys.executable, __file__, "--_child", impl, str(vocab), "--prompt",
                   str(args.prompt), "--response", str(args.response), "--batch",
                   str(args.batch), "--device", args.device, "--threads", str(args.threads)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            res[impl] = json.loads(out.strip().splitlines()[-1])
        ratio = res["hf"]["peak_mib"] / max(res["ours"]["peak_mib"], 1e-9)
        ratios.append(ratio)
        diff = abs(res["hf"]["loss"] - res["ours"]["loss"]) / abs(res["hf"]["loss"])
        hf_s, ours_s = res["time"]["hf"], res["time"]["ours"]
        speed.append(hf_s / ours_s)
        print(f"{vocab:>8} {res['hf']['peak_mib']:>17.0f} {res['ours']['peak_mib']:>11.0f} "
              f"{ratio:>7.1f}x {hf_s:>12.2f} {ours_s:>14.2f} {hf_s / ours_s:>8.2f}x {diff:>10.1e}")
    print("SUMMARY logits_memory: peak step memory HF/ours = "
          + ", ".join(f"{v // 1000}k: {r:.1f}x" for v, r in zip(args.vocabs, ratios, strict=True))
          + "; step time HF/ours = "
          + ", ".join(f"{v // 1000}k: {r:.2f}x" for v, r in zip(args.vocabs, speed, strict=True)))


if __name__ == "__main__":
    main()
