"""Generation checks while training: is the model learning to answer and to *stop*?

A loss curve cannot show whether the model stops. At every eval during training (with
--eval-data, every --eval-every steps) the model answers a fixed, seeded sample of the eval
prompts greedily (--eval-samples, batched as in `eval`), and the loop logs stop rate, template
leaks, exact match and mean length as `eval/...` in metrics.jsonl, next to eval_loss. The train
command builds the check and hands it to `train()`, which knows nothing about generation.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..data.records import Record
from .generate import Generator
from .metrics import score

KEYS = {"stop_rate": "eval/stop_rate", "template_leak_rate": "eval/template_leak_rate",
        "exact_match": "eval/exact_match", "mean_length": "eval/mean_length"}


@dataclass
class GenerationCheck:
    """Call with the model being trained (unwrapped), its tokenizer and template; returns the
    metrics to log and a few lines to show (sample answers with the stop token marked)."""

    records: Sequence[Record]
    max_new_tokens: int = 128
    show: int = 2  # sample answers printed per check
    seconds: float = field(default=0.0, init=False)  # time spent in checks so far

    @classmethod
    def sample(cls, records: Sequence[Record], n: int, seed: int, **kw) -> GenerationCheck | None:
        """A fixed sample of `n` eval records (the same at every check); None when n == 0."""
        if n <= 0 or not records:
            return None
        picked = sorted(random.Random(seed).sample(range(len(records)), min(n, len(records))))
        return cls([records[i] for i in picked], **kw)

    def __call__(self, model, tokenizer, template) -> tuple[dict[str, float], list[str]]:
        t0 = time.monotonic()
        was_training = model.training
        device = str(next(model.parameters()).device)
        gen = Generator(model, tokenizer, template, name="training", device=device)
        try:
            prompts = gen.encode_many([r.prompt_messages() for r in self.records])
            # Prompts that leave no room to answer in the model's context are left out.
            keep = [i for i, p in enumerate(prompts) if gen.context is None or len(p) < gen.context]
            outs = gen.generate([prompts[i] for i in keep], max_new_tokens=self.max_new_tokens,
                                batch_size=max(len(keep), 1)) if keep else []
        finally:
            model.train(was_training)
        records = [self.records[i] for i in keep]
        self.seconds += time.monotonic() - t0
        if not records:
            return {}, []
        report = score(outs, [r.output for r in records], gen.markers)
        metrics = {name: report[k] for k, name in KEYS.items()}
        stop = tokenizer.convert_ids_to_tokens(gen.stop_ids[0]) if gen.stop_ids else "stop"
        lines = [_sample_line(r, o.text, o.stopped, stop)
                 for r, o in list(zip(records, outs, strict=True))[:self.show]]
        return metrics, lines


def _sample_line(record: Record, text: str, stopped: bool, stop: str, width: int = 60) -> str:
    ask = " ".join(record.instruction.split())
    ans = " ".join(text.split())
    ask = ask if len(ask) <= width else ask[:width - 1] + "…"
    ans = ans if len(ans) <= 2 * width else ans[:2 * width - 1] + "…"
    return f"  › {ask} → {ans}" + (f" ⟨{stop}⟩" if stopped else " (no stop)")
