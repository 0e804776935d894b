"""Template segments -> token ids and labels: one code path for training rows and inference prompts.

- The template renders (prompt, reply) turns. Prompt k is tokenized as text on its own (turn 0)
  or right after the previous stop token (later turns), exactly as `encode_prompt` does.
- Reply k is the continuation of the joint tokenization of prompt+reply when that provably starts
  with the prompt's own ids (fast path for BPE: a token boundary at the prompt's end; otherwise the
  prompt is tokenized alone and compared). When BPE merges across the boundary, the reply is
  tokenized separately, anchored after EOS so SentencePiece adds no dummy-prefix space. Either
  way the prompt ids are exactly what inference will feed the model.
- The stop token is appended by id after every reply, never as text. BOS is added once, only when
  the tokenizer adds one (detected, not assumed) and the text does not already start with it.
- Labels are set by position: -100 on prompt tokens, ids on reply tokens and each stop token.
  Never by token id, so pad == eos tokenizers still train their EOS.
"""

from __future__ import annotations

import functools

from ..errors import ConfigError
from .templates import Segment, Template

IGNORE = -100  # the label of a position that is not trained (Hugging Face's convention)


def trained_count(labels) -> int:
    """Trained targets of one example: the loss predicts labels[t] from position t - 1, so an
    example's first token is never a target (in a packed row it would be predicted from the
    previous example). What training divides by, and what inspect and audit report."""
    return sum(1 for x in labels[1:] if x != IGNORE)


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
