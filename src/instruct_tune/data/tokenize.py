"""Record -> Example: token ids and labels, with an exact prompt/reply boundary and a trained stop.

How ids are built (one code path for training rows and inference prompts):
- The template renders (prompt, reply) turns. Prompt k is tokenized as text on its own (turn 0)
  or right after the previous stop token (later turns), exactly as `encode_prompt` does at inference.
- Reply k is the continuation of the joint tokenization of prompt+reply when that starts with the
  prompt ids (the common case: the reply is tokenized in context). When BPE merges across the
  boundary, the reply is tokenized separately, anchored after EOS so SentencePiece adds no
  dummy-prefix space. Either way the prompt ids stay exactly what inference will feed the model.
- The stop token is appended by id after every reply, never as text. BOS is added once, only when
  the tokenizer adds one (detected, not assumed) and the text does not already start with it.
- Labels are set by position: -100 on prompt tokens, ids on reply tokens and each stop token.
  Never by token id, so pad == eos tokenizers still train their EOS.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ..errors import ConfigError, DataError, Problem
from .records import Message, Record, Source
from .templates import Segment, Template, TemplateRenderError, get_template

IGNORE = -100
TRUNCATION = ("drop", "left", "error")
_CHUNK = 4096  # records per tokenizer batch: bounded memory, a progress bar that moves


@dataclass(slots=True)
class Example:
    input_ids: list[int]
    labels: list[int]
    source: Source

    @property
    def num_trained(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass
class ExampleSet:
    examples: list[Example]
    dropped: list[Problem] = field(default_factory=list)
    cached: bool = False  # loaded from the tokenization cache

    def __len__(self) -> int:
        return len(self.examples)

    def __iter__(self):
        return iter(self.examples)

    def __getitem__(self, i):
        return self.examples[i]


def _turns(segments: list[Segment]) -> list[tuple[str, str | None]]:
    """(prompt, reply) pairs; a trailing prompt without reply is the generation prompt."""
    turns, buf = [], ""
    for seg in segments:
        if seg.trainable:
            turns.append((buf, seg.text))
            buf = ""
        else:
            buf += seg.text
    if buf or not turns:
        turns.append((buf, None))
    return turns


class Encoder:
    """Turns template segments into ids/labels for one tokenizer + template."""

    def __init__(self, tokenizer, template: Template):
        self.tok, self.template = tokenizer, template
        if tokenizer.eos_token_id is None:
            raise ConfigError("The tokenizer has no EOS token, so a tuned model could never stop.")
        self.eos_id, self.eos_text = tokenizer.eos_token_id, tokenizer.eos_token
        self._fast = self._pick_backend()
        self._bpe = self._fast is not None and type(self._fast.model).__name__ == "BPE"
        self.stop_text = template.stop if template.stop is not None else self.eos_text
        self.stop_id = self.eos_id if template.stop is None else self._single_token(template.stop, "stop token")
        if template.name == "chatml":
            self._single_token("<|im_start|>", "turn marker")
        # What the tokenizer prepends on its own (BOS), detected on a probe instead of assumed.
        plain = self.encode(["a"])[0]
        full = tokenizer("a")["input_ids"]
        at = next((i for i in range(len(full)) if full[i:i + len(plain)] == plain), 0)
        self.bos = list(full[:at])

    def _pick_backend(self):
        backend = getattr(self.tok, "backend_tokenizer", None) if getattr(self.tok, "is_fast", False) else None
        if backend is None:
            return None
        probe = "Hello <|im_end|> world\n\n### Response:\n  x"
        same = backend.encode(probe, add_special_tokens=False).ids == \
            self.tok(probe, add_special_tokens=False)["input_ids"]
        return backend if same else None

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Batched tokenization without special tokens (the Rust tokenizer directly when it agrees)."""
        if not texts:
            return []
        if self._fast is not None:
            enc = getattr(self._fast, "encode_batch_fast", self._fast.encode_batch)
            return [e.ids for e in enc(texts, add_special_tokens=False)]
        return self.tok(texts, add_special_tokens=False, return_attention_mask=False)["input_ids"]

    def _single_token(self, text: str, what: str) -> int:
        ids = self.encode([text])[0]
        if len(ids) != 1:
            raise ConfigError(
                f"Template '{self.template.name}' needs {text!r} as one token ({what}), but this "
                f"tokenizer splits it into {len(ids)}. Use --template alpaca (or model, if the "
                "tokenizer has a chat_template), or add it with tokenizer.add_special_tokens(...) and "
                "resize the model's embeddings (model.resize_token_embeddings(len(tokenizer))).")
        return ids[0]

    def encode_turns(self, batch: list[list[tuple[str, str | None]]]) -> list[tuple[list[int], list[int], str | None]]:
        """(ids, labels, problem or None) for each conversation, given as (prompt, reply) turns.

        Turn k's context is its prompt, after the previous stop token for k > 0 (as text, so the
        tokenizer sees what inference will see; its id is then dropped again).
        """
        flat = [(n, k, p if k == 0 else self.stop_text + p, r, p)
                for n, turns in enumerate(batch) for k, (p, r) in enumerate(turns)]
        pieces: list[list] = [[None] * len(turns) for turns in batch]
        slow = flat
        if self._bpe:
            # One joint tokenization per turn. BPE never merges across a token boundary, so when a
            # token boundary falls exactly at the prompt's end, the tokens before it are the prompt's
            # own tokenization and the rest is the reply in context. Otherwise: the slow path.
            slow = []
            texts = [c + r if r is not None else c for _, _, c, r, _ in flat]
            encs = self._fast.encode_batch(texts, add_special_tokens=False)
            for item, e in zip(flat, encs, strict=True):
                n, k, c, r, _ = item
                cut = _boundary(e, len(c), len(c) + len(r or ""))
                ids = e.ids
                if cut is None or (k > 0 and (not ids or ids[0] != self.stop_id)):
                    slow.append(item)
                else:
                    pieces[n][k] = (ids[1 if k else 0:cut], ids[cut:] if r is not None else None)
        if slow:
            self._encode_slow(slow, pieces)
        return [self._assemble(row) for row in pieces]

    def _encode_slow(self, items, pieces) -> None:
        """Prompt tokenized on its own; the reply as the continuation of the joint tokenization when
        that starts with the prompt ids, else on its own, anchored after EOS (no dummy-prefix space)."""
        ctx_ids = self.encode([c for _, _, c, _, _ in items])
        joint_ids = self.encode([c + r for _, _, c, r, _ in items if r is not None])
        redo, j = [], 0
        for (n, k, _, r, prompt), a in zip(items, ctx_ids, strict=True):
            p = a if k == 0 else a[1:] if a and a[0] == self.stop_id else None
            reply = None
            if r is not None:
                b = joint_ids[j]
                j += 1
                reply = b[len(a):] if b[:len(a)] == a else None
            pieces[n][k] = [p, reply]
            if p is None or (r is not None and reply is None):
                redo.append((n, k, prompt, r))
        if not redo:
            return
        prompts = self.encode([p for _, _, p, _ in redo])
        anchored = self.encode([self.eos_text + (r or "") for *_, r in redo])
        plain = self.encode([r or "" for *_, r in redo])
        for (n, k, _, r), p, a, q in zip(redo, prompts, anchored, plain, strict=True):
            if pieces[n][k][0] is None:
                pieces[n][k][0] = p
            if pieces[n][k][1] is None and r is not None:
                pieces[n][k][1] = a[1:] if a and a[0] == self.eos_id else q

    def _assemble(self, row) -> tuple[list[int], list[int], str | None]:
        """(ids, labels, problem). A reply containing the stop/EOS token itself would teach the
        model to stop mid-answer, so it is reported instead of trained."""
        ids: list[int] = []
        labels: list[int] = []
        bad = {self.stop_id, self.eos_id}
        problem = None
        first = row[0][0]
        if self.bos and first[:len(self.bos)] != self.bos:
            ids += self.bos
            labels += [IGNORE] * len(self.bos)
        for p, r in row:
            ids += p
            labels += [IGNORE] * len(p)
            if r is not None:
                if problem is None and not bad.isdisjoint(r):
                    problem = f"reply contains the stop token text ({self.stop_text!r} or EOS)"
                ids += r
                ids.append(self.stop_id)
                labels += r
                labels.append(self.stop_id)
        return ids, labels, problem


def _boundary(enc, at: int, end: int) -> int | None:
    """Index of the first token starting exactly at char `at`, if no token straddles `at`."""
    if at == end:
        return len(enc.ids)
    t = enc.char_to_token(at)
    if t is None or enc.token_to_chars(t)[0] != at:
        return None
    if t > 0 and enc.token_to_chars(t - 1)[1] > at:
        return None
    return t


@functools.lru_cache(maxsize=8)
def get_encoder(tokenizer, template: Template) -> Encoder:
    return Encoder(tokenizer, template)


def _truncate(ids, labels, max_length: int, mode: str, nbos: int, stop_id: int):
    """(ids, labels, None) when it fits (maybe after left truncation), else (None, None, reason)."""
    if len(ids) <= max_length:
        return ids, labels, None
    n_prompt = sum(1 for y in labels if y == IGNORE)
    sizes = f"{len(ids)} tokens: prompt {n_prompt}, trained {len(ids) - n_prompt}"
    if mode != "left":
        return None, None, f"longer than --max-length {max_length} ({sizes})"
    last = len(labels)
    while last > 0 and labels[last - 1] != IGNORE:
        last -= 1
    reply = len(labels) - last
    if nbos + reply >= max_length:
        return None, None, (f"last reply alone does not fit --max-length {max_length} "
                            f"(reply + stop {reply} tokens; {sizes})")
    cut = len(ids) - max_length
    new_ids, new_labels = ids[:nbos] + ids[nbos + cut:], labels[:nbos] + labels[nbos + cut:]
    # An earlier reply cut in two is only context now: unlabel what is left of it, up to its stop.
    k = nbos
    while labels[nbos + cut - 1] != IGNORE and new_labels[k] != IGNORE:
        new_labels[k] = IGNORE
        k += 1
        if new_ids[k - 1] == stop_id:
            break
    return new_ids, new_labels, None


@contextlib.contextmanager
def gc_paused():
    """Building millions of small acyclic lists makes CPython's cyclic GC rescan them over and
    over; pausing it roughly halves the Python-side time."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _progress(total: int):
    from rich.progress import Progress

    return Progress(transient=True, disable=total < 20_000 or not sys.stderr.isatty())


def _tokenize(records: Sequence[Record], tokenizer, template: Template, max_length: int,
              truncation: str) -> ExampleSet:
    enc = get_encoder(tokenizer, template)
    examples, dropped = [], []
    with _progress(len(records)) as progress, gc_paused():
        task = progress.add_task("tokenizing", total=len(records))
        for lo in range(0, len(records), _CHUNK):
            chunk = records[lo:lo + _CHUNK]
            rendered, ok = [], []
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
                rendered.append(turns)
                ok.append(rec)
            for rec, (ids, labels, why) in zip(ok, enc.encode_turns(rendered), strict=True):
                if why is None:
                    nbos = len(enc.bos) if enc.bos and ids[:len(enc.bos)] == enc.bos else 0
                    ids, labels, why = _truncate(ids, labels, max_length, truncation, nbos, enc.stop_id)
                if why is not None:
                    dropped.append(Problem(rec.source.path, rec.source.line, None, why))
                else:
                    examples.append(Example(ids, labels, rec.source))
            progress.advance(task, len(chunk))
    if truncation == "error" and dropped:
        raise DataError(dropped, hint="Raise --max-length, or use --truncation drop (skip these rows) "
                                      "or --truncation left (cut the prompt from the left).")
    return ExampleSet(examples, dropped)


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
