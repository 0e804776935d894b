"""Estimated peak training memory per process, for the run header: said before the first step,
so a run that cannot fit is caught before hours of loading and tokenizing are spent twice.

    weights      every parameter in fp32 (master weights; bf16 runs use autocast)
    gradients    fp32, trainable parameters only
    AdamW        two fp32 moments per trainable parameter
    activations  what the backward keeps per token and layer at the longest micro-batch
                 (a Llama-style block: ~10 hidden + 4 intermediate values in fp32; only the
                 layer inputs with --gradient-checkpointing), plus one chunk of logits

An estimate, not a measurement: allocator slack, kernels' workspaces and the framework add to it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MemoryEstimate:
    weights: int
    gradients: int
    optimizer: int
    activations: int
    tokens: int  # tokens of the longest micro-batch on one process (padding included)

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations

    def describe(self) -> str:
        return (f"memory: ~{_gb(self.total)} peak per process (weights {_gb(self.weights)}, "
                f"gradients {_gb(self.gradients)}, AdamW {_gb(self.optimizer)}, activations "
                f"{_gb(self.activations)} at the longest micro-batch of {self.tokens:,} tokens); "
                "an estimate")


def estimate(model, plan, *, n_all: int, n_train: int, checkpointing: bool,
             logits_rows: int) -> MemoryEstimate:
    """`plan`: the training plan (its longest micro-batch); `logits_rows`: rows per logits chunk."""
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    hidden = getattr(cfg, "hidden_size", 0) or getattr(cfg, "n_embd", 0)
    inter = getattr(cfg, "intermediate_size", None) or 4 * hidden
    layers = getattr(cfg, "num_hidden_layers", 0) or getattr(cfg, "n_layer", 0)
    vocab = getattr(cfg, "vocab_size", 0)
    # One process's share of a micro-batch: every `world`-th sequence, padded to the longest.
    tokens = max((-(-len(rows) // plan.world) * max(sum(plan.lengths[i] for i in seq) for seq in rows)
                  for rows in plan.micro_batches(0)), default=0)
    per_token_layer = hidden if checkpointing else 10 * hidden + 4 * inter
    activations = 4 * tokens * layers * per_token_layer + 3 * 4 * logits_rows * vocab
    return MemoryEstimate(4 * n_all, 4 * n_train, 8 * n_train, activations, tokens)


def _gb(n: int) -> str:
    return f"{n / 2**30:.2f} GB" if n >= 2**28 else f"{n / 2**20:.0f} MB"
