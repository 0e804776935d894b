"""Rows far longer than --max-length, answered without tokenizing them in full.

BPE on one giant "word" (a 60 MB field with no spaces) runs for minutes, so a row is judged by its
character count first, with a bound that is sound for the tokenizer at hand:

- `max_token_chars`: the most input characters one token can stand for. Every token is a vocab
  string (or an added token), and each of its characters stands for at most one input character
  when nothing between the text and the model deletes or merges characters: no normalizer that
  strips or cleans (NFC/NFKC merge at most 4 into 1: the bound is multiplied by 4), no
  pre-tokenizer that removes what it splits on, every unknown character a token of its own (byte
  fallback, an unfused unk, or the full byte-level alphabet), no added token that swallows the
  spaces around it, no truncation inside the tokenizer. When any of that cannot be shown, there
  is no bound (None) and rows are tokenized as before.
- A turn's kept ids cover all of its reply and all of its prompt but at most one leading token
  (the stop token that anchors a later turn), so a row of N characters in T turns has at least
  N / L - T tokens (L = max_token_chars): more than --max-length when N > (max_length + T) * L.
- --truncation left keeps the last --max-length tokens; when only a tail of the first prompt can
  reach them, only that tail is tokenized: twice, from two different cuts, and used only when both
  give the same ids and labels (tokens near a cut can differ from the full text's, and are
  discarded: each tail holds MARGIN tokens more than are kept).
"""

from __future__ import annotations

import json

MARGIN = 64  # tokens past the kept window, so what a cut disturbs is discarded
WHOLE_MAX_CHARS = 500_000  # when two tails disagree, rows up to this are tokenized whole (~1 s)
_SAFE_NORMALIZERS = {"Prepend", "Lowercase", "NFD", "NFKD"}  # never shorten the text
# Composition merges at most one character's canonical decomposition into it: at most 4 code
# points (e.g. U+1F82; Hangul LVT is 3), so the text shrinks at most 4-fold (tested).
COMPOSING = {"NFC": 4, "NFKC": 4}
_SAFE_PRE_TOKENIZERS = {"ByteLevel", "Metaspace", "Digits", "UnicodeScripts", "Split", "Punctuation"}
_BYTES = [f"<0x{b:02X}>" for b in range(256)]


def _parts(cfg: dict | None, key: str) -> list[dict]:
    if cfg is None:
        return []
    if cfg.get("type") == "Sequence":
        return [p for sub in cfg.get(key, []) for p in _parts(sub, key)]
    return [cfg]


def _shrink(normalizer: dict | None, pre_tokenizer: dict | None) -> int | None:
    """How many-fold normalizing can shorten a text, if nothing deletes characters (else None)."""
    factor = 1
    for n in _parts(normalizer, "normalizers"):
        if n["type"] == "Replace":
            pattern = n.get("pattern", {})
            if "String" not in pattern or len(n.get("content", "")) < len(pattern["String"]):
                return None
        elif n["type"] in COMPOSING:
            factor *= COMPOSING[n["type"]]
        elif n["type"] not in _SAFE_NORMALIZERS:
            return None
    for p in _parts(pre_tokenizer, "pretokenizers"):
        if p["type"] not in _SAFE_PRE_TOKENIZERS or p.get("behavior") == "Removed":
            return None
    return factor


def _state(component) -> dict | None:
    return None if component is None else json.loads(component.__getstate__())


def max_token_chars(backend) -> int | None:
    """The most input characters one token of this `tokenizers.Tokenizer` can stand for, or None
    when no such bound can be shown (see the module docstring)."""
    model = backend.model
    if type(model).__name__ != "BPE" or backend.truncation is not None:
        return None
    pre = _state(backend.pre_tokenizer)
    shrink = _shrink(_state(backend.normalizer), pre)
    if shrink is None:
        return None
    added = list(backend.get_added_tokens_decoder().values())
    if any(t.lstrip or t.rstrip for t in added):
        return None
    vocab = backend.get_vocab(with_added_tokens=True)
    byte_level = any(p["type"] == "ByteLevel" for p in _parts(pre, "pretokenizers"))
    unknown_ok = ((model.byte_fallback and all(b in vocab for b in _BYTES))
                  or (model.unk_token in vocab and not model.fuse_unk)
                  or (byte_level and not model.continuing_subword_prefix
                      and not model.end_of_word_suffix and _has_byte_alphabet(vocab)))
    if not unknown_ok or not vocab:
        return None
    return shrink * max(max(map(len, vocab)), max((len(t.content) for t in added), default=1))


def _has_byte_alphabet(vocab: dict[str, int]) -> bool:
    from tokenizers import pre_tokenizers

    return all(c in vocab for c in pre_tokenizers.ByteLevel.alphabet())


def too_long(turns: list[tuple[str, str | None]], limit: int, max_length: int,
             truncation: str) -> str | None:
    """Why the rendered row cannot fit --max-length whatever its tokens (None: it might fit).
    `limit` is max_token_chars. With left truncation only the last reply (+ stop) must fit."""
    if truncation == "left":
        reply = len(turns[-1][1] or "")
        if reply >= max_length * limit:
            return (f"last reply alone does not fit --max-length {max_length} (reply {reply:,} "
                    f"characters: at least {-(-reply // limit):,} tokens; not tokenized)")
        return None
    chars = sum(len(p) + len(r or "") for p, r in turns)
    if chars > (max_length + len(turns)) * limit:
        return (f"longer than --max-length {max_length} ({chars:,} characters: at least "
                f"{chars // limit - len(turns):,} tokens; not tokenized)")
    return None


def left_tails(turns: list[tuple[str, str | None]], limit: int,
               max_length: int) -> tuple[list, list] | None:
    """Two cuts of the first prompt whose tails both hold the --max-length tokens that left
    truncation keeps plus MARGIN (each tail >= (max_length + T + MARGIN) * limit characters), or
    None when the row is short enough to tokenize whole or its excess is not in the first prompt."""
    budget = (max_length + len(turns) + MARGIN) * limit
    chars = sum(len(p) + len(r or "") for p, r in turns)
    first, reply = turns[0]
    cut_near, cut_far = chars - budget, chars - 2 * budget - 1
    if cut_far <= 0 or cut_near > len(first):
        return None
    return ([(first[cut_near:], reply), *turns[1:]], [(first[cut_far:], reply), *turns[1:]])
