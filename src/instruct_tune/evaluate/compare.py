"""Before/after evaluation: generate for held-out records with the tuned model (and optionally the
base model, prompted with the same template), score both and put them side by side.

`evaluate(model_dir, records, compare=base_dir)` is the API (the train command calls it after
training with --eval-data; `instruct-tune eval` is commands/eval.py). `few_shot=K` also prompts the
base model with K worked examples before each question (fewshot.py): base zero-shot, base K-shot
and tuned zero-shot side by side.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Sequence

from ..data.records import Record
from ..errors import ConfigError, DataError, Problem
from ..models import local_model_dir
from .fewshot import ShotsSource, load_shots, pick_shots, shots_source, with_shots
from .generate import Generator, check_sampling, err
from .metrics import METRIC_KEYS, Generation, difference, leaked_marker, score


def _prompts(gen: Generator, records: Sequence[Record], skip_invalid: bool) -> tuple[list, list[int]]:
    """Prompt ids for each record, and the indices kept (prompts that overflow the context are
    reported by file:line, or dropped with --skip-invalid)."""
    prompts, keep, problems = [], [], []
    for i, (rec, ids) in enumerate(zip(records, gen.encode_many([r.prompt_messages() for r in records]),
                                       strict=True)):
        if gen.context is not None and len(ids) >= gen.context:
            problems.append(Problem(rec.source.path, rec.source.line, "instruction",
                                    f"prompt is {len(ids)} tokens; the model's context is {gen.context}"))
            continue
        prompts.append(ids)
        keep.append(i)
    if problems and not skip_invalid:
        raise DataError(problems, hint="Shorten these rows, or pass --skip-invalid to leave them out.")
    if problems:
        err.print(f"[yellow]warning:[/] left out {len(problems)} record(s) whose prompt does not fit "
                  f"the context of {gen.context} tokens.")
    return prompts, keep


def _base_with_tokenizer(path, tokenizer, template, load: dict) -> Generator:
    """The base model prompted through the tuned tokenizer, embeddings grown for the added tokens
    (rows it has never trained: exactly the 'before' state of those tokens)."""
    from ..models import load_model

    model = load_model(path, **load)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    if model.get_input_embeddings().num_embeddings < len(tokenizer):
        model.resize_token_embeddings(len(tokenizer))
    err.print(f"[dim]note: the base model {path} is prompted through the tuned tokenizer, which has "
              "the template's added tokens.[/]")
    return Generator(model, tokenizer, template, name=str(path))


def _run_model(gen: Generator, prompts: list, records: Sequence[Record], sampling: dict,
               batch_size: int, progress: bool) -> tuple[dict, list[Generation]]:
    gens = gen.generate(prompts, batch_size=batch_size, progress=progress, **sampling)
    tasks = [r.meta.get("task") for r in records]
    metrics = score(gens, [r.output for r in records], gen.markers, tasks)
    return {"model": gen.name, **metrics}, gens


def _few_shot(base: Generator, rows: Sequence[Record], pool: list[Record], k: int, seed: int,
              sampling: dict, batch_size: int, progress: bool) -> tuple[dict, list[Generation], list[int]]:
    """The base model prompted with k worked examples per row; examples are dropped (first ones
    first) from a row whose prompt would leave less than --max-new-tokens of the context."""
    picks = pick_shots(pool, rows, k, seed)
    prompts = base.encode_many([with_shots(s, r) for s, r in zip(picks, rows, strict=True)])
    budget = None if base.context is None else base.context - sampling["max_new_tokens"]
    for i, row in enumerate(rows):
        while budget is not None and len(prompts[i]) > budget and picks[i]:
            picks[i] = picks[i][1:]
            prompts[i] = base.encode(with_shots(picks[i], row))
    used = [len(p) for p in picks]
    gens = base.generate(prompts, batch_size=batch_size, progress=progress, **sampling)
    metrics = score(gens, [r.output for r in rows], base.markers, [r.meta.get("task") for r in rows])
    fewer = sum(u < k for u in used)
    if fewer:
        err.print(f"[yellow]note:[/] {fewer} of {len(rows)} few-shot prompts got fewer than {k} "
                  f"examples to leave {sampling['max_new_tokens']} new tokens in the "
                  f"{base.context}-token context.", highlight=False)
    return {"model": base.name, "k": k, "mean_shots": sum(used) / max(len(used), 1),
            "fewer_shots": fewer, **metrics}, gens, used


def _release(gen: Generator) -> None:
    """Free a model before loading the next, so a before/after run needs memory for one."""
    del gen.model
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass


def evaluate(model_dir: str | os.PathLike, records: Sequence[Record], *,
             compare: str | os.PathLike | None = None, template: str | None = None,
             max_new_tokens: int = 256, temperature: float = 0.0, top_p: float = 1.0,
             batch_size: int = 16, samples: int = 3, trust_remote_code: bool = False,
             allow_pickle: bool = False, skip_invalid: bool = False, progress: bool = False,
             few_shot: int = 0, shots: str | ShotsSource | None = None) -> dict:
    """Generate for `records` and score the outputs against each record's `output`.

    With `compare`, the base model is prompted with the tuned model's template and scored too;
    the report then has `base` (same keys) and `delta` (tuned - base). With `few_shot` K, the base
    model also answers with K worked examples before each question (from `shots`, default the
    training data of the run that wrote `model_dir`; never an eval row): `base_few_shot` and
    `delta_few_shot` (tuned - base K-shot). `rows` holds every record's output; `samples` the
    first few side by side.
    """
    if not records:
        raise ConfigError("No records to evaluate.")
    if few_shot < 0 or few_shot and compare is None:
        raise ConfigError(f"--few-shot {few_shot}: give a number of examples >= 1 together with "
                          "--compare BASE (the few-shot baseline is the base model's).")
    source = (shots if isinstance(shots, ShotsSource) else shots_source(model_dir, shots)) \
        if few_shot else None
    if source is not None:  # a bad --shots file fails before any model runs
        pool, overlap = load_shots(source, records)
    check_sampling(max_new_tokens, temperature, top_p)
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1 (got {batch_size}).")
    for name in (model_dir, compare):  # a typo in --compare fails now, not after the tuned model ran
        if name is not None:
            local_model_dir(name)
    sampling = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p}
    load = {"trust_remote_code": trust_remote_code, "allow_pickle": allow_pickle}
    gen = Generator.load(model_dir, template=template, **load)
    prompts, keep = _prompts(gen, records, skip_invalid)
    kept = [records[i] for i in keep]
    tmpl = gen.template
    report, outs = _run_model(gen, prompts, kept, sampling, batch_size, progress)
    report = {"template": getattr(tmpl, "name", "?"), **sampling,
              "stop_token": gen.tokenizer.convert_ids_to_tokens(gen.stop_ids[0]), **report}
    markers, tuned_tokenizer = gen.markers, gen.tokenizer
    _release(gen)
    if source is not None:
        report["shots"] = {"source": source.spec, "from": source.origin, "pool": len(pool),
                           "left_out_eval_prompts": overlap}

    base_outs: list[Generation] | None = None
    if compare is not None:
        # The base model gets the tuned model's template: the question is what tuning changed.
        try:
            base = Generator.load(compare, template=tmpl, **load)
        except ConfigError:  # tuning added the template's tokens, which the base tokenizer lacks
            base = _base_with_tokenizer(compare, tuned_tokenizer, tmpl, load)
        base_prompts = base.encode_many([r.prompt_messages() for r in kept])
        report["base"], base_outs = _run_model(base, base_prompts, kept, sampling, batch_size, progress)
        report["delta"] = difference(report, report["base"])
        if source is not None:
            report["base_few_shot"], shot_outs, used = _few_shot(
                base, kept, pool, few_shot, source.seed, sampling, batch_size, progress)
            report["delta_few_shot"] = difference(report, report["base_few_shot"])
        _release(base)

    report["rows"] = [_row(r, g, markers, None if base_outs is None else base_outs[j])
                      for j, (r, g) in enumerate(zip(kept, outs, strict=True))]
    if source is not None:
        for row, g, n in zip(report["rows"], shot_outs, used, strict=True):
            row.update(few_shot_output=g.text, few_shot_stopped=g.stopped,
                       few_shot_length=g.length, few_shot_leak=leaked_marker(g.raw, markers),
                       few_shot_k=n)
    report["samples"] = report["rows"][:max(samples, 0)]
    return report


def _row(rec: Record, out: Generation, markers: Sequence[str], base: Generation | None) -> dict:
    row = {"source": str(rec.source), "task": rec.meta.get("task"), "instruction": rec.instruction,
           "input": rec.input, "reference": rec.output, "output": out.text, "stopped": out.stopped,
           "length": out.length, "leak": leaked_marker(out.raw, markers)}
    if base is not None:
        row.update(base_output=base.text, base_stopped=base.stopped, base_length=base.length,
                   base_leak=leaked_marker(base.raw, markers))
    return row


def summary(report: dict) -> dict:
    """The report without per-record rows: what `--json` prints."""
    return {k: v for k, v in report.items() if k != "rows"}


__all__ = ["METRIC_KEYS", "evaluate", "summary"]
