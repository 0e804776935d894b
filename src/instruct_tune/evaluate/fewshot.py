"""The few-shot baseline: the base model prompted with K worked examples before each question, in
the same template (each example a finished turn: its answer and the stop token, as in training).

Instruction tuning exists because base models are unreliable zero-shot *and* few-shot; this is
the fair "could prompting alone have done it?" comparison `eval --compare BASE --few-shot K`
adds next to base zero-shot and tuned zero-shot.

    shots_source(model, shots)      where the examples come from (cheap: no loading)
    load_shots(source, eval_rows)   the example pool, never holding an eval row's prompt
    pick_shots(pool, rows, k, seed) K examples per row: the same K for every row of a task
    with_shots(shots, row)          the conversation the base model is prompted with
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..data.records import Message, Record
from ..errors import ConfigError


@dataclass(frozen=True)
class ShotsSource:
    """A data spec to read worked examples from, with how the run that wrote the model read it."""

    spec: str
    format: str = "auto"
    columns: str | None = None
    seed: int = 0
    origin: str = "--shots"  # or the config.yaml it was found in


def _run_config(model: str | Path) -> tuple[Path, dict] | None:
    """The config.yaml of the train run that wrote `model` (DIR/final or DIR/checkpoints/step-N)."""
    import yaml

    path = Path(model)
    for d in (path.parent, path.parent.parent):
        try:
            cfg = yaml.safe_load((d / "config.yaml").read_text())
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(cfg, dict) and {"model", "data", "out"} <= set(cfg) and cfg["data"]:
            return d / "config.yaml", cfg
    return None


def shots_source(model: str | Path, shots: str | None) -> ShotsSource:
    """--shots FILE, else the training data of the run that wrote `model` (from its config.yaml).
    Raises ConfigError when neither is known. Reads only the YAML: safe before anything loads."""
    if shots:
        return ShotsSource(shots)
    found = _run_config(model)
    if found is not None:
        path, cfg = found
        return ShotsSource(str(cfg["data"]), cfg.get("format") or "auto", cfg.get("columns"),
                           int(cfg.get("seed") or 0), origin=str(path))
    raise ConfigError(f"--few-shot needs worked examples: {model} has no run config.yaml naming "
                      "its training data, so pass --shots FILE (rows in the training format; "
                      "never the eval rows).")


def _prompt_key(rec: Record) -> tuple:
    return tuple((m.role, m.content.strip(), m.input.strip()) for m in rec.prompt_messages()
                 if m.role != "system")


def load_shots(source: ShotsSource, eval_rows: Sequence[Record]) -> tuple[list[Record], int]:
    """The pool of worked examples and how many rows were left out because their prompt is an
    eval row's prompt (an example must never give the answer away)."""
    from ..data.mix import load_spec

    loaded = load_spec(source.spec, format=source.format, columns=source.columns,
                       skip_invalid=True, seed=source.seed)
    held_out = {_prompt_key(r) for r in eval_rows}
    pool = [r for r in loaded.records if r.output.strip() and _prompt_key(r) not in held_out]
    if not pool:
        raise ConfigError(f"--few-shot: {source.spec} ({source.origin}) has no usable worked "
                          "examples (rows with an output whose prompt is not an eval row's).")
    return pool, sum(_prompt_key(r) in held_out for r in loaded.records)


def pick_shots(pool: Sequence[Record], rows: Sequence[Record], k: int,
               seed: int = 0) -> list[list[Record]]:
    """K examples for each row. A row with a `task` gets examples of its task when the pool has K
    of them (the strongest honest prompt); otherwise K from the whole pool. Every row of a task
    gets the same examples (one fixed prompt per task, as a person would write it); seeded."""
    by_task: dict[str, list[Record]] = {}
    for rec in pool:
        by_task.setdefault(str(rec.meta.get("task")), []).append(rec)
    chosen: dict[str | None, list[Record]] = {}
    out = []
    for row in rows:
        task = row.meta.get("task")
        key = str(task) if task is not None and len(by_task.get(str(task), ())) >= k else None
        if key not in chosen:
            source = by_task[key] if key is not None else list(pool)
            rng = random.Random(f"shots:{seed}:{key}")
            chosen[key] = rng.sample(source, min(k, len(source)))
        out.append(chosen[key])
    return out


def with_shots(shots: Sequence[Record], row: Record) -> tuple[Message, ...]:
    """row's prompt with the examples as earlier finished turns: [row's system], then each
    example's question and answer, then row's question."""
    prompt = row.prompt_messages()
    system = tuple(m for m in prompt if m.role == "system")
    turns: list[Message] = []
    for shot in shots:
        turns += [m for m in shot.prompt_messages() if m.role != "system"]
        turns.append(Message("assistant", shot.output))
    return (*system, *turns, *(m for m in prompt if m.role != "system"))


__all__ = ["ShotsSource", "load_shots", "pick_shots", "shots_source", "with_shots"]
