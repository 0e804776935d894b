"""Everything the loop needs that comes from files: tokenizer, template, examples (train and eval),
and the model (resized when the template needs tokens the tokenizer lacks, LoRA-wrapped)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..config import TrainConfig
from ..data.load import format_summary, load_records_report
from ..data.mix import load_spec
from ..data.records import Record
from ..data.templates import FormatTemplate, Template, get_template
from ..data.tokenize import Example, build_examples, left_cut_note, stop_token_ids
from ..data.validate import summarize_problems
from ..errors import ConfigError, DataError
from ..models import load_model, load_tokenizer


@dataclass
class Data:
    tokenizer: object
    template: Template
    train: list[Example]
    eval: list[Example]
    eval_records: list[Record]
    stop_ids: list[int]
    added_tokens: list[str] = field(default_factory=list)
    report: list[str] = field(default_factory=list)  # header lines: rows kept/dropped and why


def _missing_tokens(tokenizer, template: Template) -> list[str]:
    """Marker tokens a built-in/custom format template needs as single tokens but the tokenizer
    lacks (e.g. chatml on a Llama-2 base). Jinja templates come with their tokenizer's tokens."""
    if not isinstance(template, FormatTemplate):
        return []
    wanted = (["<|im_start|>", "<|im_end|>"] if template.name == "chatml" else []) + (
        [template.stop] if template.stop else [])
    vocab = tokenizer.get_vocab()
    return [t for t in dict.fromkeys(wanted)
            if t not in vocab or len(tokenizer(t, add_special_tokens=False)["input_ids"]) != 1]


def _tokenize(records, tok, template, cfg: TrainConfig, what: str, report: list[str]) -> list[Example]:
    result = build_examples(records, tok, template, max_length=cfg.max_length,
                            truncation=cfg.truncation, cache_dir=cfg.cache_dir)
    if result.dropped:
        reasons = ", ".join(f"{r} ({n})" for r, n in summarize_problems(result.dropped)[:3])
        report.append(f"{what}: dropped {len(result.dropped):,} rows at tokenization ({reasons}; "
                      f"first: {result.dropped[0]})")
    if not result.examples:
        _none_fit(records, tok, template, cfg, what)
        raise DataError(result.dropped or [], hint=f"No {what} rows left after tokenization: raise "
                        "--max-length or use --truncation left.")
    if cfg.truncation == "left" and (cut := left_cut_note(result.examples, cfg.max_length)):
        note, gone = cut
        report.append(f"{what}: {note}" + (f" [yellow]({gone})[/]" if gone else ""))
    return list(result.examples)


def _none_fit(records, tok, template, cfg: TrainConfig, what: str) -> None:
    """When every row is too long, one line with the lengths needed says more than a page of
    'longer than --max-length' rows (only this failure path pays for the second tokenization)."""
    full = build_examples(records, tok, template, max_length=16 * cfg.max_length, truncation="drop",
                          cache_dir="none")
    lengths = sorted(len(e.input_ids) for e in full.examples)
    if len(lengths) != len(records) or lengths[0] <= cfg.max_length:
        return  # rows were dropped for other reasons too: the full list says which
    n = len(lengths)
    median, p95 = lengths[(n - 1) // 2], lengths[max(0, -(-95 * n // 100) - 1)]
    raise ConfigError(
        f"All {n:,} {what} rows are longer than --max-length {cfg.max_length} tokens: the "
        f"shortest needs {lengths[0]:,}, the median {median:,}, the longest {lengths[-1]:,}. "
        f"Raise --max-length (--max-length {p95} keeps 95% of the rows).")


def load_data(cfg: TrainConfig, say: Callable[[str], None]) -> Data:
    tok = load_tokenizer(cfg.model, trust_remote_code=cfg.trust_remote_code)
    template = get_template(cfg.template, tok)
    added = _missing_tokens(tok, template)
    if added:
        tok.add_tokens(added, special_tokens=True)
    report: list[str] = []
    _check_data_kind(cfg)
    stop_ids = stop_token_ids(tok, template)
    if cfg.method != "sft":
        train, evals = _pairs(cfg, tok, template, report)
        # The generation checks answer eval prompts and compare with the chosen answers.
        eval_records = [rec.record("chosen") for _, rec in evals]
        return Data(tok, template, train, [e for e, _ in evals], eval_records, stop_ids, added,
                    report)
    loaded = load_spec(cfg.data, format=cfg.format, columns=cfg.columns,  # a.jsonl=0.7,b.jsonl=0.3
                       skip_invalid=cfg.skip_invalid, seed=cfg.seed)
    report.append(format_summary(loaded))
    records, eval_records = list(loaded.records), []
    if cfg.eval_data:
        held = load_records_report(cfg.eval_data, format=cfg.format, columns=cfg.columns,
                                   skip_invalid=cfg.skip_invalid)
        report.append("eval: " + format_summary(held))
        eval_records = list(held.records)
    elif cfg.eval_split > 0:
        records, eval_records = _split(records, cfg, report)
    train = _tokenize(records, tok, template, cfg, "train", report)
    evals = _tokenize(eval_records, tok, template, cfg, "eval", report) if eval_records else []
    report.append(f"examples: {len(train):,} train, {len(evals):,} eval; "
                  f"{sum(len(e.input_ids) for e in train):,} train tokens")
    return Data(tok, template, train, evals, eval_records, stop_ids, added, report)


def _split(rows: list, cfg: TrainConfig, report: list[str]) -> tuple[list, list]:
    """--eval-split: (train rows, held-out rows), a seeded sample."""
    if len(rows) < 2:
        raise DataError([], hint="--eval-split needs at least 2 rows.")
    n_eval = min(len(rows) - 1, max(1, round(cfg.eval_split * len(rows))))
    chosen = set(random.Random(cfg.seed).sample(range(len(rows)), n_eval))
    report.append(f"eval: held out {n_eval:,} of the rows (--eval-split {cfg.eval_split})")
    return ([r for i, r in enumerate(rows) if i not in chosen],
            [r for i, r in enumerate(rows) if i in chosen])


def _check_data_kind(cfg: TrainConfig) -> None:
    """Pairs need a preference --method, records need sft: say so instead of a column error."""
    from ..data.mix import parse_spec
    from ..data.pairs import is_preference_source

    sources = [s.path for s in parse_spec(cfg.data)]
    pairs = [is_preference_source(p, cfg.columns) for p in sources]
    if cfg.method == "sft" and any(pairs):
        raise ConfigError(f"--data {cfg.data} holds preference pairs (chosen/rejected): pass a "
                          "preference --method (dpo, ipo, hinge, robust, simpo or orpo), usually "
                          "with --model a supervised-tuned model (e.g. RUN/final).")
    if cfg.method != "sft" and not all(pairs):
        raise ConfigError(f"--method {cfg.method} trains on chosen/rejected pairs, but --data "
                          f"{cfg.data} holds no 'chosen'/'rejected' columns. Give a pair file "
                          '({"prompt", "chosen", "rejected"}) or use --method sft.')
    if cfg.method != "sft" and len(sources) > 1:
        raise ConfigError("--data: preference tuning reads one pair file (mixing pair files is "
                          "not supported yet); combine them first, e.g. with `instruct-tune curate`.")


def _pairs(cfg: TrainConfig, tok, template: Template, report: list[str]) -> tuple[list, list]:
    """Preference pairs for train, and (pair, its record) for eval, tokenized
    (data/pair_tokenize.py)."""
    from ..data.pair_tokenize import build_pairs
    from ..data.pairs import load_pairs

    def load(path: str, what: str) -> list:
        loaded = load_pairs(path, columns=cfg.columns, skip_invalid=cfg.skip_invalid)
        report.append(("eval: " if what == "eval" else "") + loaded.summary())
        return list(loaded.records)

    def tokenize(records: list, what: str) -> list:
        result = build_pairs(records, tok, template, max_length=cfg.max_length,
                             cache_dir=cfg.cache_dir)
        if result.dropped:
            report.append(f"{what}: dropped {len(result.dropped):,} pairs at tokenization "
                          f"(first: {result.dropped[0]})")
        if not result.examples and records:
            raise DataError(result.dropped, hint=f"No {what} pairs left after tokenization: "
                            "raise --max-length.")
        return list(result.examples)

    records = load(cfg.data, "train")
    held = load(cfg.eval_data, "eval") if cfg.eval_data else []
    if cfg.eval_split > 0:
        records, held = _split(records, cfg, report)
    train, evals = tokenize(records, "train"), tokenize(held, "eval") if held else []
    report.append(f"pairs: {len(train):,} train, {len(evals):,} eval; "
                  f"{sum(len(p.chosen_ids) + len(p.rejected_ids) for p in train):,} answer tokens")
    by_source = {(r.source.path, r.source.line): r for r in held}
    return train, [(e, by_source[(e.source.path, e.source.line)]) for e in evals]


def load_model_for_training(cfg: TrainConfig, tokenizer) -> tuple[torch.nn.Module, list[int]]:
    """The base model in fp32 (master weights; bf16 runs use autocast), embeddings grown to the
    tokenizer when it has more tokens, LoRA-wrapped with --lora. Returns (model, new token ids)."""
    model = load_model(cfg.model, dtype=torch.float32, trust_remote_code=cfg.trust_remote_code,
                       allow_pickle=cfg.allow_pickle)
    rows = model.get_input_embeddings().weight.shape[0]
    new_ids = list(range(rows, len(tokenizer)))
    if new_ids:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if cfg.lora:
        from .lora import apply_lora

        model = apply_lora(model, cfg, new_ids)
    return model, new_ids
