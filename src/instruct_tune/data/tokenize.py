"""Record -> Example: token ids and labels, with an exact prompt/reply boundary and a trained stop.

How ids are built (exact boundary, stop token by id, BOS once) is in data/encode.py. Here: the
public API, truncation (never cutting a reply or its stop token), batching, the cache.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterable, Sequence

import numpy as np

from ..errors import ConfigError, DataError, Problem
from . import long_rows
from .encode import IGNORE, Encoder, _turns, get_encoder
from .examples import Example, ExampleArrays, ExampleSet, gc_paused
from .records import Message, Record
from .templates import Template, TemplateRenderError, get_template

__all__ = ["IGNORE", "Encoder", "Example", "ExampleSet", "build_example", "build_examples",
           "encode_prompt", "encode_prompts", "get_encoder", "stop_token_ids"]
TRUNCATION = ("drop", "left", "error")
_CHUNK = 4096  # records per tokenizer batch: bounded memory, a progress bar that moves


def _truncate(ids, labels, max_length: int, mode: str, nbos: int, stop_id: int):
    """(ids, labels, None) when it fits (maybe after left truncation), else (None, None, reason)."""
    if len(ids) <= max_length:
        return ids, labels, None
    n_prompt = sum(1 for y in labels if y == IGNORE)
    sizes = f"{len(ids)} tokens: prompt {n_prompt}, trained {len(ids) - n_prompt}"
    if mode != "left":
        return None, None, f"longer than --max-length {max_length} ({sizes})"
    # The last reply starts after the last prompt token or after the previous reply's stop token
    # (replies can be back to back, e.g. the raw template with an empty user turn).
    last = len(labels) - 1
    while last > 0 and labels[last - 1] != IGNORE and ids[last - 1] != stop_id:
        last -= 1
    reply = len(labels) - last
    if nbos + reply >= max_length:
        return None, None, (f"last reply alone does not fit --max-length {max_length} "
                            f"(reply + stop {reply} tokens; {sizes})")
    cut = len(ids) - max_length
    new_ids, new_labels = ids[:nbos] + ids[nbos + cut:], labels[:nbos] + labels[nbos + cut:]
    # An earlier reply cut in two is only context now: unlabel what is left of it, up to its stop.
    k = nbos
    while (labels[nbos + cut - 1] != IGNORE and ids[nbos + cut - 1] != stop_id
           and new_labels[k] != IGNORE):
        new_labels[k] = IGNORE
        k += 1
        if new_ids[k - 1] == stop_id:
            break
    return new_ids, new_labels, None


def left_cut_note(examples: Sequence[Example], max_length: int) -> tuple[str, str] | None:
    """What --truncation left did, for the user: (rows cut from the left exactly at --max-length
    and the least prompt any of them kept, a warning when that is a few tokens: the instruction
    itself is gone). None when no row was cut."""
    if not isinstance(examples, ExampleArrays):
        examples = ExampleArrays.from_examples(list(examples))
    at_limit = np.flatnonzero(examples.lengths == max_length)
    if not len(at_limit):
        return None
    kept = int(examples.first_trained(at_limit).min())
    note = (f"--truncation left: up to {len(at_limit):,} rows cut to --max-length {max_length}; "
            f"the shortest prompt left has {kept} tokens")
    gone = ("its instruction is mostly or entirely gone: raise --max-length or use --truncation "
            "drop") if kept < 16 else ""
    return note, gone


def _progress(total: int):
    from rich.progress import Progress

    return Progress(transient=True, disable=total < 20_000 or not sys.stderr.isatty())


def _tokenize(records: Sequence[Record], tokenizer, template: Template, max_length: int,
              truncation: str) -> ExampleSet:
    enc = get_encoder(tokenizer, template)
    limit = _char_limit(enc)
    ids_out, labels_out, sources, dropped = [], [], [], []
    with _progress(len(records)) as progress, gc_paused():
        task = progress.add_task("tokenizing", total=len(records))
        for lo in range(0, len(records), _CHUNK):
            chunk = records[lo:lo + _CHUNK]
            rendered, ok = [], []  # ok: (record, why it is dropped unread, its left tails)
            for rec in chunk:
                try:
                    turns = _turns(template.render(rec))
                except TemplateRenderError as e:
                    dropped.append(Problem(rec.source.path, rec.source.line, None, str(e)))
                    continue
                if turns[-1][1] is None:  # loaders reject these; records built by hand may not
                    dropped.append(Problem(rec.source.path, rec.source.line, "messages",
                                           "no assistant reply to train on"))
                    continue
                why = tails = None
                if limit is not None:  # far too long rows are answered without BPE (long_rows.py)
                    why = long_rows.too_long(turns, limit, max_length, truncation)
                    if why is None and truncation == "left":
                        tails = long_rows.left_tails(turns, limit, max_length)
                if why is None:
                    rendered += tails or [turns]
                ok.append((rec, why, tails))
            encoded = iter(enc.encode_turns(rendered))
            for rec, why, tails in ok:
                if why is None:
                    ids, labels, why = _fit(enc, next(encoded), max_length, truncation)
                    if tails:
                        ids, labels, why = _same_tail((ids, labels, why),
                                                      _fit(enc, next(encoded), max_length, truncation),
                                                      rec, enc, max_length, truncation)
                if why is not None:
                    dropped.append(Problem(rec.source.path, rec.source.line, None, why))
                else:
                    ids_out.append(ids)
                    labels_out.append(labels)
                    sources.append(rec.source)
            progress.advance(task, len(chunk))
    if truncation == "error" and dropped:
        raise DataError(dropped, hint="Raise --max-length, or use --truncation drop (skip these rows) "
                                      "or --truncation left (cut the prompt from the left).")
    return ExampleSet(ExampleArrays.from_rows(ids_out, labels_out, sources), dropped)


def _fit(enc: Encoder, encoded, max_length: int, truncation: str):
    ids, labels, why = encoded
    if why is None:
        nbos = len(enc.bos) if enc.bos and ids[:len(enc.bos)] == enc.bos else 0
        ids, labels, why = _truncate(ids, labels, max_length, truncation, nbos, enc.stop_id)
    return ids, labels, why


def _same_tail(near, far, rec: Record, enc: Encoder, max_length: int, truncation: str):
    """Two left-truncated tails of one row: kept when they agree, else the row is tokenized whole
    (exact; bounded, as the tails are cut only from rows a few times the budget) or dropped."""
    if near == far:
        return near
    turns = _turns(enc.template.render(rec))
    chars = sum(len(p) + len(r or "") for p, r in turns)
    if chars <= long_rows.WHOLE_MAX_CHARS:
        return _fit(enc, enc.encode_turns([turns])[0], max_length, truncation)
    return None, None, (f"prompt too long to cut exactly for --truncation left ({chars:,} "
                        "characters, and its tokens depend on where it is cut); shorten it")


@functools.lru_cache(maxsize=8)
def _char_limit(enc: Encoder) -> int | None:
    """max_token_chars of the Rust tokenizer the encoder uses for every text, if it does."""
    return None if enc._fast is None else long_rows.max_token_chars(enc._fast)


def build_examples(records: Sequence[Record], tokenizer, template: Template | str | None = None,
                   max_length: int = 2048, truncation: str = "drop",
                   cache_dir: str | None = None) -> ExampleSet:
    """Tokenize and mask records (batched, cached on disk: see data/cache.py).

    cache_dir: None = the default cache (~/.cache/instruct-tune/tokenized, or $INSTRUCT_TUNE_CACHE),
    "none" = no cache. Dropped rows (too long, or unrenderable) are in `.dropped` with file:line.
    """
    from . import cache

    if truncation not in TRUNCATION:
        raise ConfigError(f"--truncation must be one of {TRUNCATION}, not {truncation!r}")
    if not isinstance(template, Template):
        template = get_template(template, tokenizer)
    records = list(records)
    store = cache.open_cache(cache_dir)
    key = store.key(records, tokenizer, template, max_length, truncation) if store else None
    if store and (hit := store.load(key)) is not None:
        return hit
    result = _tokenize(records, tokenizer, template, max_length, truncation)
    if store:
        store.save(key, result)
    return result


def build_example(record: Record, tokenizer, template: Template | str | None = None,
                  max_length: int = 2048, truncation: str = "drop") -> Example | None:
    """One record (no cache). None when the row is dropped."""
    result = build_examples([record], tokenizer, template, max_length, truncation, cache_dir="none")
    return result.examples[0] if result.examples else None


def encode_prompts(conversations: Iterable[Sequence[Message | dict]], tokenizer,
                   template: Template | str | None = None) -> list[list[int]]:
    """Inference prompt ids for many conversations (history + generation prompt), batched."""
    if not isinstance(template, Template):
        template = get_template(template, tokenizer)
    enc = get_encoder(tokenizer, template)
    turns = [_turns(template.prompt_segments(msgs)) for msgs in conversations]
    return [ids for ids, _, _ in enc.encode_turns(turns)]


def encode_prompt(messages: Sequence[Message | dict], tokenizer,
                  template: Template | str | None = None) -> list[int]:
    """Inference prompt ids: exactly the prompt ids training used for the same conversation."""
    return encode_prompts([messages], tokenizer, template)[0]


def stop_token_ids(tokenizer, template: Template | str | None = None) -> list[int]:
    """Ids generation must stop on: the template's end-of-turn token and EOS."""
    if not isinstance(template, Template):
        template = get_template(template, tokenizer)
    enc = get_encoder(tokenizer, template)
    return list(dict.fromkeys([enc.stop_id, enc.eos_id]))
