"""PairRecord -> PairExample: one prompt's ids shared by two answers, each ending in one stop token.

No boundary logic of its own: the chosen and the rejected conversation (prompt + that answer) are
encoded by the SFT encoder (`Encoder.encode_turns`, data/encode.py) exactly as build_example would,
and each is split where its last reply starts. Hence:
- prompt_ids are exactly encode_prompt(prompt), the ids inference feeds the model, whatever BPE
  would merge across the prompt/answer boundary; BOS at most once (only if the tokenizer adds one).
  Both conversations give the same prompt ids (checked); they are kept once.
- chosen_ids / rejected_ids are exactly the trained tokens (labels != -100) of the SFT example for
  prompt + that answer: the answer's tokens, then the stop token (the template's, else EOS) by id.
A pair whose prompt + longer answer exceeds max_length is dropped and reported, never cut.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import Problem
from .encode import IGNORE, Encoder, _turns, get_encoder
from .pairs import ANSWERS, PairRecord
from .records import Source
from .templates import Template, TemplateRenderError, get_template
from .tokenize import Example, ExampleSet, gc_paused

__all__ = ["PairExample", "PairSet", "build_pair", "build_pairs"]
_CHUNK = 2048  # pairs per tokenizer batch (two conversations each)


@dataclass(slots=True)
class PairExample:
    prompt_ids: list[int]  # BOS (if the tokenizer adds one) + the rendered prompt
    chosen_ids: list[int]  # the chosen answer's tokens + one stop token
    rejected_ids: list[int]  # the rejected answer's tokens + one stop token
    source: Source

    def __len__(self) -> int:
        """Prompt plus the longer answer: what must fit --max-length."""
        return len(self.prompt_ids) + max(len(self.chosen_ids), len(self.rejected_ids))

    def example(self, answer: str = "chosen") -> Example:
        """prompt + that answer as an SFT Example (labels -100 on the prompt), e.g. for an SFT term."""
        if answer not in ANSWERS:
            raise ValueError(f"answer must be 'chosen' or 'rejected', not {answer!r}")
        ids = self.chosen_ids if answer == "chosen" else self.rejected_ids
        return Example(self.prompt_ids + ids, [IGNORE] * len(self.prompt_ids) + ids, self.source)


@dataclass
class PairSet:
    examples: list[PairExample]
    dropped: list[Problem] = field(default_factory=list)  # one per dropped pair, with file:line
    cached: bool = False  # loaded from the tokenization cache

    def __len__(self) -> int:
        return len(self.examples)

    def __iter__(self):
        return iter(self.examples)

    def __getitem__(self, i):
        return self.examples[i]


def build_pairs(records: Sequence[PairRecord], tokenizer, template: Template | str | None = None,
                *, max_length: int = 2048, cache_dir: str | None = None) -> PairSet:
    """Tokenize pairs (batched, cached on disk like SFT rows: see data/cache.py).

    template: alpaca (default), chatml, model, a file or a saved run directory (get_template).
    cache_dir: None = the default cache, "none" = no cache. Dropped pairs are in `.dropped`.
    """
    from . import cache

    if not isinstance(template, Template):
        template = get_template(template, tokenizer)
    records = list(records)
    store = cache.open_cache(cache_dir)
    key = None
    if store:
        # The SFT key over the chosen/rejected conversations, with a tag in place of SFT's
        # truncation mode: never equal to an SFT key, and it changes with this file's code.
        flat = [p.record(a) for p in records for a in ANSWERS]
        key = store.key(flat, tokenizer, template, max_length, _cache_tag())
        if (hit := store.load(key)) is not None:
            return _from_flat(hit)
    result = _tokenize(records, tokenizer, template, max_length)
    if store:
        store.save(key, _to_flat(result))
    return result


def build_pair(record: PairRecord, tokenizer, template: Template | str | None = None,
               *, max_length: int = 2048) -> PairExample | None:
    """One pair (no cache); None when it is dropped."""
    result = build_pairs([record], tokenizer, template, max_length=max_length, cache_dir="none")
    return result.examples[0] if result.examples else None


def _tokenize(records: list[PairRecord], tokenizer, template: Template, max_length: int) -> PairSet:
    enc = get_encoder(tokenizer, template)
    examples, dropped = [], []
    with gc_paused():
        for lo in range(0, len(records), _CHUNK):
            ok, turns = [], []
            for pair in records[lo:lo + _CHUNK]:
                rendered, bad = [], []
                for a in ANSWERS:
                    try:
                        rendered.append(_turns(template.render(pair.record(a))))
                    except TemplateRenderError as e:
                        bad.append((a, str(e)))
                if bad:
                    dropped.append(_answer_problem(pair.source, bad))
                else:
                    ok.append(pair)
                    turns += rendered
            encoded = enc.encode_turns(turns)
            for i, pair in enumerate(ok):
                got = _split(pair.source, encoded[2 * i], encoded[2 * i + 1], enc, max_length)
                (examples if isinstance(got, PairExample) else dropped).append(got)
    return PairSet(examples, dropped)


def _split(source: Source, chosen, rejected, enc: Encoder, max_length: int) -> PairExample | Problem:
    """One pair from its two encoded conversations, or why it is dropped."""
    bad = [(a, why) for a, (_, _, why) in zip(ANSWERS, (chosen, rejected), strict=True) if why]
    if bad:
        return _answer_problem(source, bad)
    parts = []
    for ids, labels, _ in (chosen, rejected):
        # The last reply starts after the last prompt token, or right after an earlier reply's
        # stop token (templates such as raw can render an empty prompt between two replies).
        start = len(ids) - 1
        while start > 0 and labels[start - 1] != IGNORE and ids[start - 1] != enc.stop_id:
            start -= 1
        parts.append((ids[:start], ids[start:]))
    (prompt, chosen_ids), (other, rejected_ids) = parts
    if prompt != other:  # only a template whose prompt depends on the answer can do this
        return Problem(source.path, source.line, None, "the template renders this prompt "
                       "differently before the chosen and the rejected answer, so they share no "
                       "prompt; use a template whose prompt does not depend on the answer")
    longest = max(len(chosen_ids), len(rejected_ids))
    if len(prompt) + longest > max_length:
        return Problem(source.path, source.line, None, f"prompt {len(prompt)} + longest answer "
                       f"{longest} tokens > --max-length {max_length}; raise --max-length or "
                       "shorten the pair (it is dropped, never cut)")
    return PairExample(prompt, chosen_ids, rejected_ids, source)


def _answer_problem(source: Source, bad: list[tuple[str, str]]) -> Problem:
    """One problem per dropped pair, naming each answer at fault (e.g. stop token text in it)."""
    fields = ", ".join(a for a, _ in bad)
    why = "; ".join(dict.fromkeys(w for _, w in bad))
    return Problem(source.path, source.line, fields, f"{why}; fix the answer or drop the pair")


@functools.cache
def _cache_tag() -> str:
    return "pairs:" + hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


def _to_flat(result: PairSet) -> ExampleSet:
    """Two Examples per pair for the SFT cache format: prompt + chosen (prompt masked), then the
    rejected answer alone (all trained). Both end in a trained stop token, as the cache needs."""
    flat = []
    for p in result.examples:
        flat += [p.example("chosen"), Example(p.rejected_ids, list(p.rejected_ids), p.source)]
    return ExampleSet(flat, result.dropped)


def _from_flat(hit: ExampleSet) -> PairSet:
    pairs, rows = [], iter(hit.examples)
    for c, r in zip(rows, rows, strict=True):  # (chosen with its prompt, rejected) per pair
        n = next((i for i, y in enumerate(c.labels) if y != IGNORE), len(c.labels))
        pairs.append(PairExample(c.input_ids[:n], c.input_ids[n:], r.input_ids, c.source))
    return PairSet(pairs, hit.dropped, cached=True)
