"""Generation with a trained model: the prompt is built exactly as in training, output stops on
any stop token (EOS and the template's end-of-turn token) and is cut there.

`Generator.generate` is batched: prompts are sorted by length (so each batch pads little),
left-padded (so every row's last prompt token sits at the same position and new tokens append
in step) and decoded with the KV cache by `model.generate`. `Generator.stream` decodes one prompt
and hands text deltas to a callback as tokens arrive, for `generate` and `chat`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from rich.console import Console

from ..errors import ConfigError
from .metrics import Generation, template_markers

err = Console(stderr=True, soft_wrap=True)  # messages hold paths: never break them


def resolve_template(model_dir: str | os.PathLike, tokenizer, fallback: str | None):
    """The template saved with the model; else `fallback`; else alpaca, with a warning."""
    from ..data.templates import Template, get_template

    saved = Template.load(model_dir) if Path(model_dir).is_dir() else None
    if saved is not None:
        if fallback and fallback != getattr(saved, "name", fallback):
            err.print(f"[yellow]warning:[/] {model_dir} was trained with template "
                      f"'{saved.name}'; ignoring --template {fallback}.")
        return saved
    if fallback is None:
        err.print(f"[yellow]warning:[/] {model_dir} has no template.json; using the alpaca template. "
                  "Pass --template if the model was tuned with another one.")
    return get_template(fallback or "alpaca", tokenizer)


def check_sampling(max_new_tokens: int, temperature: float, top_p: float,
                   seed: int | None = None) -> None:
    """Sampling options for API callers (the CLI checks them before loading anything). With a
    seed, the sampler's RNG is seeded too (see `seed_sampler`)."""
    from ..config import SamplingOptions

    problems = SamplingOptions(max_new_tokens, temperature, top_p).problems()
    if problems:
        raise ConfigError(problems[0] + ".")
    if seed is not None:
        seed_sampler(seed)


def seed_sampler(seed: int) -> None:
    """Seed torch's global RNG, which transformers' generate samples from, so the same command
    samples the same answer."""
    torch.manual_seed(seed)


def tokenizer_dir(model_dir: Path) -> Path:
    """A LoRA adapter directory saved without its tokenizer falls back to the base model's."""
    from ..models import adapter_base, is_adapter_dir

    has_tok = any((model_dir / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json"))
    if not has_tok and is_adapter_dir(model_dir):
        return Path(adapter_base(model_dir))
    return model_dir


class _Callback:
    """A `generate` streamer that passes decoded text deltas to `on_text`, never the stop token."""

    def __init__(self, tokenizer, stop_ids: set[int], on_text: Callable[[str], None]):
        self.tokenizer, self.stop_ids, self.on_text = tokenizer, stop_ids, on_text
        self.ids: list[int] = []
        self.sent = ""
        self.prompt_seen = self.done = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # generate() first pushes the prompt itself
            self.prompt_seen = True
            return
        for t in value.reshape(-1).tolist():
            if self.done or t in self.stop_ids:
                self.done = True
                break
            self.ids.append(t)
        self._flush(final=False)

    def end(self) -> None:
        self._flush(final=True)

    def _flush(self, final: bool) -> None:
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        # A multi-byte character split over tokens decodes to U+FFFD until its last byte arrives.
        if (final or not text.endswith("\ufffd")) and text.startswith(self.sent):
            if len(text) > len(self.sent):
                self.on_text(text[len(self.sent):])
            self.sent = text


class Generator:
    """A model, its tokenizer and template, ready to answer prompts."""

    def __init__(self, model, tokenizer, template, name: str = "<memory>", device: str = "auto"):
        from ..data.tokenize import stop_token_ids

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = model.to(device).eval()
        self.tokenizer, self.template, self.name = tokenizer, template, name
        # Stop on the template's stop token and EOS, plus any eos the model's own config lists.
        ids = list(stop_token_ids(tokenizer, template))
        extra = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        for t in [extra] if isinstance(extra, int) else (extra or []):
            if t not in ids:
                ids.append(t)
        self.stop_ids: list[int] = ids
        self.pad_id: int = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else ids[0]
        self.markers = template_markers(template)
        cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        self.context: int | None = next(
            (v for k in ("max_position_embeddings", "n_positions") if isinstance(v := getattr(cfg, k, None), int)),
            None)

    @classmethod
    def load(cls, model_dir: str | os.PathLike, *, template=None, trust_remote_code: bool = False,
             allow_pickle: bool = False, device: str = "auto") -> Generator:
        """Load a model directory (full model or LoRA adapter, merged for speed) for inference.

        `template`: a name/path used when the directory has no saved template, or a Template
        object used as is (the base model in a before/after comparison gets the tuned one's)."""
        from ..data.templates import Template
        from ..models import load_model, load_tokenizer

        path = Path(model_dir)
        tokenizer = load_tokenizer(tokenizer_dir(path), trust_remote_code=trust_remote_code)
        tmpl = template if isinstance(template, Template) else resolve_template(path, tokenizer, template)
        model = load_model(path, trust_remote_code=trust_remote_code, allow_pickle=allow_pickle)
        if hasattr(model, "merge_and_unload"):  # a PeftModel: fold the adapter in, decode at base speed
            model = model.merge_and_unload()
        return cls(model, tokenizer, tmpl, name=str(model_dir), device=device)

    def encode(self, messages: Sequence) -> list[int]:
        """Prompt ids for a conversation: the same code path that built the training examples."""
        from ..data.tokenize import encode_prompt

        return list(encode_prompt(list(messages), self.tokenizer, self.template))

    def encode_many(self, conversations: Sequence[Sequence]) -> list[list[int]]:
        """`encode` for many conversations at once (one batched tokenizer call)."""
        from ..data.tokenize import encode_prompts

        return encode_prompts([list(c) for c in conversations], self.tokenizer, self.template)

    def _config(self, max_new_tokens: int, temperature: float, top_p: float):
        from transformers import GenerationConfig

        check_sampling(max_new_tokens, temperature, top_p)
        # Explicit values everywhere, so a model's own generation_config (e.g. a repetition penalty
        # or sampling defaults) cannot make our numbers differ between models.
        sample = temperature > 0
        return GenerationConfig(
            max_new_tokens=max_new_tokens, do_sample=sample, temperature=temperature if sample else 1.0,
            top_p=top_p if sample else 1.0, top_k=0 if sample else 50, repetition_penalty=1.0,
            num_beams=1, eos_token_id=self.stop_ids, pad_token_id=self.pad_id, use_cache=True)

    def _room(self, prompt_len: int, max_new_tokens: int) -> int:
        """New tokens that fit the model's context after a (padded) prompt of this length."""
        if self.context is None:
            return max_new_tokens
        if prompt_len >= self.context:
            raise ConfigError(f"A prompt of {prompt_len} tokens does not fit the model's context of "
                              f"{self.context} tokens. Shorten the instruction.")
        return min(max_new_tokens, self.context - prompt_len)

    def _finish(self, new_tokens: list[int]) -> Generation:
        """Cut at the first stop token; anything after it is padding from finished rows."""
        stop = next((i for i, t in enumerate(new_tokens) if t in self.stop_ids), None)
        ids = new_tokens if stop is None else new_tokens[:stop]
        return Generation(token_ids=ids, text=self.tokenizer.decode(ids, skip_special_tokens=True),
                          raw=self.tokenizer.decode(ids, skip_special_tokens=False),
                          stopped=stop is not None)

    @torch.inference_mode()
    def generate(self, prompts: Sequence[Sequence[int]], *, max_new_tokens: int = 256,
                 temperature: float = 0.0, top_p: float = 1.0, batch_size: int = 16,
                 progress: bool = False) -> list[Generation]:
        """Generate for many prompts at once; results come back in the order of `prompts`."""
        if batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1 (got {batch_size}).")
        # Longest first: similar lengths share a batch, and running out of memory happens at once.
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]), reverse=True)
        results: list[Generation | None] = [None] * len(prompts)
        device = next(self.model.parameters()).device
        capped = 0
        # Two path parts: a before/after eval runs base/final then tuned/final, or org/model.
        label = "/".join(Path(self.name).parts[-2:])
        with _progress(progress, len(prompts), f"generating ({label})") as advance:
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]
                width = max(len(prompts[i]) for i in idx)
                ids = torch.full((len(idx), width), self.pad_id, dtype=torch.long)
                mask = torch.zeros((len(idx), width), dtype=torch.long)
                for row, i in enumerate(idx):
                    p = list(prompts[i])
                    ids[row, width - len(p):] = torch.tensor(p, dtype=torch.long)
                    mask[row, width - len(p):] = 1
                room = self._room(width, max_new_tokens)
                capped += len(idx) if room < max_new_tokens else 0
                cfg = self._config(room, temperature, top_p)
                out = self.model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                                          generation_config=cfg)
                for row, i in enumerate(idx):
                    results[i] = self._finish(out[row, width:].tolist())
                advance(len(idx))
        if capped:
            err.print(f"[yellow]warning:[/] {self.name}: {capped} {'prompt' if capped == 1 else 'prompts'}"
                      f" left room for fewer than {max_new_tokens} new tokens in the model's "
                      f"{self.context}-token context; they got less.", highlight=False)
        return results  # type: ignore[return-value]

    @torch.inference_mode()
    def stream(self, prompt: Sequence[int], on_text: Callable[[str], None], *, max_new_tokens: int = 256,
               temperature: float = 0.0, top_p: float = 1.0) -> Generation:
        """Generate for one prompt, passing text to `on_text` as it is decoded."""
        device = next(self.model.parameters()).device
        ids = torch.tensor([list(prompt)], dtype=torch.long, device=device)
        cfg = self._config(self._room(ids.shape[1], max_new_tokens), temperature, top_p)
        streamer = _Callback(self.tokenizer, set(self.stop_ids), on_text)
        out = self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                  generation_config=cfg, streamer=streamer)
        return self._finish(out[0, ids.shape[1]:].tolist())


class _progress:
    """A rich progress bar when asked for and attached to a terminal; when asked for but not on a
    terminal (logs, CI, nohup), a plain line every ~10% so a long eval is never silent."""

    def __init__(self, enabled: bool, total: int, label: str):
        self.bar = None
        self.enabled, self.total, self.label = enabled, total, label
        if enabled and err.is_terminal:
            from rich.progress import Progress

            self.bar = Progress(console=err, transient=True)
            self.task = self.bar.add_task(label, total=total)

    def __enter__(self) -> Callable[[int], None]:
        if self.bar is not None:
            self.bar.start()
            return lambda n: self.bar.advance(self.task, n)
        if not self.enabled or self.total <= 0:
            return lambda n: None
        start, done, next_pct = time.perf_counter(), 0, 10

        def advance(n: int) -> None:
            nonlocal done, next_pct
            done += n
            pct = 100 * done // self.total
            if pct >= next_pct or done >= self.total:
                err.print(f"{self.label}: generated {done:,}/{self.total:,} rows ({pct}%), "
                          f"{time.perf_counter() - start:.0f} s", highlight=False, soft_wrap=True)
                next_pct = (pct // 10 + 1) * 10
        return advance

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()
