"""Tiny tokenizers and models built in-process (no downloads), shared by the whole test suite.

Three tokenizer kinds cover the cases that break masking in the wild:
- "llama":  byte-level BPE that adds BOS, pad != eos (like Llama-3).
- "gpt2":   byte-level BPE, no BOS, pad == eos (like GPT-2 and many fine-tunes).
- "chatml": byte-level BPE whose eos is <|im_end|> and which ships a ChatML chat_template (like Qwen).
"""

from __future__ import annotations

import random
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

WORDS = ["the", "a", "an", "of", "to", "and", "in", "is", "was", "for", "on", "that", "with", "as", "by", "at", "from", "it", "this", "be", "are", "or", "not", "instruction", "response", "input", "output", "answer", "question", "write", "list", "name", "give", "sentence", "word", "number", "count", "reverse", "upper", "lower", "sort", "first", "last", "letter", "story", "girl", "boy", "dog", "cat", "sun", "day", "happy", "little", "big", "red", "blue", "green", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "Lily", "Tom", "Paris", "France", "capital", "sum", "plus", "minus", "yes", "no", "true", "false"]

CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def corpus(n: int = 3000, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(3, 14))]
        line = " ".join(words)
        if rng.random() < 0.3:
            line = line.capitalize() + rng.choice([".", "?", "!", ":", ","])
        if rng.random() < 0.2:
            line = "### Instruction:\n" + line + "\n\n### Response:\n" + str(rng.randint(0, 999))
        lines.append(line)
    return lines


def _train_bytelevel(specials: list[str], vocab_size: int) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(corpus(), trainer)
    return tok


def build_tokenizer(kind: str, vocab_size: int = 600):
    """A transformers fast tokenizer of the given kind."""
    from transformers import PreTrainedTokenizerFast

    if kind == "llama":
        tok = _train_bytelevel(["<|begin_of_text|>", "<|end_of_text|>", "<|pad|>"], vocab_size)
        bos = tok.token_to_id("<|begin_of_text|>")
        tok.post_processor = processors.TemplateProcessing(
            single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A $B",
            special_tokens=[("<|begin_of_text|>", bos)])
        return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|begin_of_text|>",
                                       eos_token="<|end_of_text|>", pad_token="<|pad|>")
    if kind == "gpt2":
        tok = _train_bytelevel(["<|endoftext|>"], vocab_size)
        return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>",
                                       pad_token="<|endoftext|>", bos_token="<|endoftext|>")
    if kind == "chatml":
        tok = _train_bytelevel(["<|endoftext|>", "<|im_start|>", "<|im_end|>"], vocab_size)
        t = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>",
                                    pad_token="<|endoftext|>")
        t.chat_template = CHATML_TEMPLATE
        return t
    raise ValueError(f"unknown tokenizer kind {kind!r}")


def build_model(arch: str, vocab_size: int, seed: int = 0, **overrides):
    """A randomly initialised tiny causal LM: 'llama', 'qwen2' or 'gpt2'."""
    import torch
    from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig, Qwen2Config

    torch.manual_seed(seed)
    if arch == "llama":
        cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64,
                          num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                          max_position_embeddings=512, **overrides)
    elif arch == "qwen2":
        cfg = Qwen2Config(vocab_size=vocab_size, hidden_size=32, intermediate_size=64,
                          num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                          max_position_embeddings=512, **overrides)
    elif arch == "gpt2":
        cfg = GPT2Config(vocab_size=vocab_size, n_embd=32, n_layer=2, n_head=4, n_positions=512,
                         **overrides)
    else:
        raise ValueError(f"unknown arch {arch!r}")
    return AutoModelForCausalLM.from_config(cfg).float().eval()


# Which tokenizer each architecture is paired with when saved as a model directory.
ARCH_TOKENIZER = {"llama": "llama", "gpt2": "gpt2", "qwen2": "chatml"}


def save_model_dir(arch: str, path: Path, seed: int = 0) -> Path:
    """Save a tiny model + its tokenizer as a local model directory (safetensors)."""
    tok = build_tokenizer(ARCH_TOKENIZER[arch])
    model = build_model(arch, len(tok), seed=seed, bos_token_id=tok.bos_token_id,
                        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.bos_token_id = tok.bos_token_id
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
