"""Shared builders for the bench scripts: synthetic Alpaca-like rows, a BPE tokenizer trained on
them, a tiny Llama-architecture model, and the measuring sticks (peak RSS, matmul peak).

Everything is built in-process from a seed (no downloads). The text is a Zipf-distributed word
stream with a bigram habit, so a small model has something to learn and losses are comparable.
Token lengths follow a realistic Alpaca-like spread: prompts about 20-300 tokens, responses 5-400.
Models and tokenizers are cached under ~/.cache/instruct-tune-bench so repeated runs start fast.

Public names (other bench scripts may import them):
    build_tokenizer(vocab_size)              -> PreTrainedTokenizerFast (BOS added, pad != eos)
    make_rows(n, tokenizer, seed)            -> list of {"instruction", "input", "output"} dicts
    make_pairs(n, tokenizer, seed)           -> list of {"instruction", "input", "chosen", "rejected"}
    build_llama(vocab_size, **overrides)     -> LlamaForCausalLM (hidden 256, 4 layers, fp32)
    model_dir(vocab_size, **overrides)       -> Path of a saved model + tokenizer directory (cached)
    needed_flops(model_dir, tokens, trained, attention) -> (FLOPs an epoch needs, body params)
    write_jsonl(rows, path), peak_rss_mib(), matmul_peak(dtype), ALPACA_PROMPT(s)
    peak_dtypes(precision)                   -> the dtypes whose matmul peak is worth measuring
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import time
from pathlib import Path

import numpy as np

CACHE = Path(os.environ.get("INSTRUCT_TUNE_BENCH_CACHE", Path.home() / ".cache/instruct-tune-bench"))
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|pad|>"]
PREAMBLE = ("Below is an instruction that describes a task. Write a response that appropriately "
            "completes the request.")
LLAMA_DEFAULTS = dict(hidden_size=256, intermediate_size=768, num_hidden_layers=4,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=2048,
                      tie_word_embeddings=False)


def alpaca_prompt(instruction: str, input: str = "") -> str:
    """The standard Alpaca prompt (for scripts that must render text without instruct_tune)."""
    if input:
        return (f"{PREAMBLE}\n\n### Instruction:\n{instruction}\n\n### Input:\n{input}"
                "\n\n### Response:\n")
    return f"{PREAMBLE}\n\n### Instruction:\n{instruction}\n\n### Response:\n"


def _lexicon(n_words: int, seed: int) -> list[str]:
    """Pronounceable pseudo-words of 1-4 syllables, unique, most frequent first."""
    rng = np.random.default_rng(seed)
    syll = [c + v for c in "bdfghklmnprstvwz" for v in "aeiou"] + ["th", "sh", "qu", "ng"]
    words: dict[str, None] = {}
    while len(words) < n_words:
        k = int(rng.choice([1, 2, 2, 3, 3, 3, 4]))
        words["".join(rng.choice(syll, size=k))] = None
    return list(words)


class _WordStream:
    """Zipf unigrams plus a bigram habit: after word w, 60% of the time one of w's 4 successors."""

    def __init__(self, n_words: int = 30_000, seed: int = 0):
        self.words = _lexicon(n_words, seed)
        rng = np.random.default_rng(seed + 1)
        p = 1.0 / np.arange(1, n_words + 1)
        self.cdf = np.cumsum(p / p.sum())
        self.succ = rng.integers(0, n_words, size=(n_words, 4))

    def ids(self, n: int, rng: np.random.Generator) -> np.ndarray:
        out = np.empty(n, dtype=np.int64)
        zipf = np.searchsorted(self.cdf, rng.random(n))
        follow, pick = rng.random(n) < 0.6, rng.integers(0, 4, size=n)
        prev = zipf[0]
        for i in range(n):
            prev = self.succ[prev, pick[i]] if (i and follow[i]) else zipf[i]
            out[i] = prev
        return out

    def text(self, ids: np.ndarray) -> str:
        words = [self.words[i] for i in ids]
        # A full stop every 12th word gives sentences without changing the token statistics much.
        return " ".join(w + "." if (j % 12 == 11) else w for j, w in enumerate(words))


_STREAMS: dict[int, _WordStream] = {}


def _stream(seed: int = 0) -> _WordStream:
    if seed not in _STREAMS:
        _STREAMS[seed] = _WordStream(seed=seed)
    return _STREAMS[seed]


def build_tokenizer(vocab_size: int = 32_000, seed: int = 0):
    """A byte-level BPE tokenizer (Llama-3 style: adds BOS, pad != eos) trained on the word stream."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    stream, rng = _stream(seed), np.random.default_rng(seed + 2)
    lines = [stream.text(stream.ids(200, rng)) for _ in range(2_000)]
    lines += [alpaca_prompt("x", "y")] * 50 + [stream.text(np.arange(i, i + 50)) for i in
                                               range(0, len(stream.words), 50)]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(lines, trainer)
    bos = tok.token_to_id(SPECIALS[0])
    tok.post_processor = processors.TemplateProcessing(
        single=f"{SPECIALS[0]} $A", pair=f"{SPECIALS[0]} $A $B", special_tokens=[(SPECIALS[0], bos)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=SPECIALS[0],
                                   eos_token=SPECIALS[1], pad_token=SPECIALS[2])


def _lognormal_len(rng, median: float, sigma: float, lo: int, hi: int) -> int:
    return int(np.clip(round(median * np.exp(sigma * rng.standard_normal())), lo, hi))


def _text_source(tokenizer, seed: int):
    """(rng, text_of): text_of(n) is word-stream text of about n tokens under `tokenizer`, drawn
    from rng (callers draw their lengths from the same rng, so one seed fixes everything)."""
    stream, rng = _stream(0), np.random.default_rng(seed)
    spaced = [" " + w for w in stream.words]
    n_tok = np.array([len(x) for x in tokenizer(spaced, add_special_tokens=False)["input_ids"]])

    def text_of(target: int) -> str:
        ids = stream.ids(target, rng)  # words are >= 1 token, so target words always suffice
        cut = int(np.searchsorted(np.cumsum(n_tok[ids]), target, side="right"))
        return stream.text(ids[:max(cut, 1)])

    return rng, text_of


def make_rows(n: int, tokenizer, seed: int = 0) -> list[dict]:
    """n Alpaca rows whose token lengths follow a realistic spread.

    instruction ~ 25 tokens (4-150), an input on 40% of rows ~ 60 tokens (5-130), so prompts with
    the template are about 20-300 tokens; output ~ 100 tokens, 5-400 (with full stops), heavy-tailed.
    """
    rng, text_of = _text_source(tokenizer, seed + 100)
    rows = []
    for _ in range(n):
        inp = text_of(_lognormal_len(rng, 60, 0.9, 5, 130)) if rng.random() < 0.4 else ""
        rows.append({"instruction": text_of(_lognormal_len(rng, 25, 0.7, 4, 150)), "input": inp,
                     "output": text_of(_lognormal_len(rng, 100, 0.9, 5, 370))})
    return rows


def make_pairs(n: int, tokenizer, seed: int = 0) -> list[dict]:
    """n Alpaca-style preference pairs {"instruction", "input", "chosen", "rejected"}.

    instruction ~ 60 tokens (42-220), an input on half the pairs ~ 80 (10-160), so prompts with
    the template are about 50-400 tokens; chosen and rejected ~ 90 tokens each (about 20-300
    with the stop token), drawn independently, heavy-tailed.
    """
    rng, text_of = _text_source(tokenizer, seed + 200)
    pairs = []
    for _ in range(n):
        inp = text_of(_lognormal_len(rng, 80, 0.8, 10, 160)) if rng.random() < 0.5 else ""
        pairs.append({"instruction": text_of(_lognormal_len(rng, 60, 0.6, 42, 220)), "input": inp,
                      "chosen": text_of(_lognormal_len(rng, 90, 0.8, 18, 280)),
                      "rejected": text_of(_lognormal_len(rng, 90, 0.8, 18, 280))})
    return pairs


def build_llama(vocab_size: int, seed: int = 0, tokenizer=None, **overrides):
    """A randomly initialised fp32 Llama (hidden 256, 4 layers, 4 heads, MLP 768, untied head)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    ids = {}
    if tokenizer is not None:
        ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                   pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab_size, **{**LLAMA_DEFAULTS, **ids, **overrides})
    return LlamaForCausalLM(cfg).float()


def model_dir(vocab_size: int = 32_000, seed: int = 0, **overrides) -> Path:
    """Build (once, cached) and return a local model directory: safetensors weights + tokenizer."""
    key = json.dumps({"v": vocab_size, "s": seed, **LLAMA_DEFAULTS, **overrides, "rev": 1},
                     sort_keys=True)
    path = CACHE / f"llama-{vocab_size}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"
    if (path / "model.safetensors").is_file():
        return path
    tok = build_tokenizer(vocab_size, seed)
    model = build_llama(len(tok), seed, tokenizer=tok, **overrides)
    model.generation_config.eos_token_id = tok.eos_token_id
    tmp = path.with_suffix(".tmp")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    os.replace(tmp, path)  # atomic: concurrent runs never see a half-written directory
    return path


def needed_flops(model_dir: Path | str, tokens: int, trained: int, attention: int) -> tuple[float, int]:
    """(FLOPs one epoch of training needs, body params): 6 x body params x all real tokens, 6 x
    head params x trained tokens (logits are only needed where there is a label), and causal
    attention 6 x layers x hidden x `attention`, the sum of each example's length squared (for a
    prefix-shared pair: (P + C)^2 + (P + R)^2 - P^2, what its queries see)."""
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(model_dir)
    d, L, V = cfg.hidden_size, cfg.num_hidden_layers, cfg.vocab_size
    kv = cfg.num_key_value_heads * (d // cfg.num_attention_heads)
    body = L * (2 * d * d + 2 * d * kv + 3 * d * cfg.intermediate_size + 2 * d) + d
    return 6 * body * tokens + 6 * V * d * trained + 6 * L * d * attention, body


def write_jsonl(rows: list[dict], path: Path) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


SHORT = {"float32": "fp32", "bfloat16": "bf16"}


def peak_dtypes(precision: str) -> tuple[str, ...]:
    """float32, and bfloat16 where it runs natively (the check `train --precision bf16` makes) or
    the run trains in it: in software one 2048^3 bf16 matmul takes ~25 s, its peak minutes."""
    from instruct_tune.hardware import cpu_bf16_native

    return ("float32", "bfloat16") if precision == "bf16" or cpu_bf16_native() else ("float32",)


def matmul_peak(dtype=None, n: int = 2048, repeats: int = 6, clock=time.perf_counter) -> float:
    """Best-of-N FLOP/s of an n x n x n matmul: the practical peak of this machine for dtype.
    With `clock=time.process_time` it is FLOPs per CPU-second (robust when the machine is shared)."""
    import torch

    dtype = dtype or torch.float32
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b  # warm-up: thread pool and kernel selection
    best = float("inf")
    for _ in range(repeats):
        t = clock()
        a @ b
        best = min(best, clock() - t)
    return 2 * n**3 / max(best, 1e-9)
