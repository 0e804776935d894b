"""Jinja chat templates: the tokenizer's own `chat_template` (or a .jinja file) as a Template, and
the `chat_template` we save with trained/exported models so plain transformers prompts exactly as
training did (`chat_template_for`, checked by `check_chat_template`).

Reply spans are found by rendering the conversation progressively: the rendering of
messages[:i] with add_generation_prompt=True must be a prefix of the rendering of messages[:i+1];
the reply text is located after it. So templates without `{% generation %}` markers work
(PITFALLS #12), and the mask never depends on markers in the text.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from ..errors import ConfigError
from .records import Message
from .templates import Segment, Template, TemplateRenderError, fold_input


@functools.lru_cache(maxsize=16)
def _compile(source: str):
    """Compile like transformers' apply_chat_template does (same sandbox and helpers)."""
    try:
        from transformers.utils.chat_template_utils import _compile_jinja_template

        return _compile_jinja_template(source)
    except ImportError:  # a transformers without this private helper: the same settings by hand
        import jinja2
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message):
            raise jinja2.exceptions.TemplateError(message)

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                            extensions=["jinja2.ext.loopcontrols"])
        env.globals["raise_exception"] = raise_exception
        return env.from_string(source)


@dataclass(frozen=True)
class JinjaTemplate(Template):
    """A Jinja chat_template. Reply spans come from rendering the conversation progressively:
    text(messages[:i], add_generation_prompt=True) must be a prefix of text(messages[:i+1]).

    `stop` is the end-of-turn token found after a reply (e.g. <|im_end|>, <|eot_id|>,
    <end_of_turn>, or the EOS itself); text between the reply and it is trained with the reply,
    text after it belongs to the next prompt. None: the template ends turns with no special token,
    so the tokenizer's EOS is appended.
    """

    name: str
    source: str
    stop: str | None = None
    special_tokens: tuple[tuple[str, str], ...] = ()  # bos_token etc., as the Jinja sees them
    kind = "jinja"

    @classmethod
    def from_tokenizer(cls, tokenizer, source: str, name: str) -> JinjaTemplate:
        specials = tuple((k, v) for k in ("bos_token", "eos_token", "pad_token", "unk_token")
                         if isinstance(v := getattr(tokenizer, k, None), str))
        probe = cls(name, source, None, specials)
        reply = "Probe reply 7f3a"
        msgs = ({"role": "user", "content": "Probe question?"}, {"role": "assistant", "content": reply})
        pre, full = probe._render(msgs[:1], True), probe._render(msgs, False)
        at = full.find(reply, len(pre))
        if not full.startswith(pre) or at < 0:
            raise ConfigError(f"template {name}: rendering a user turn with add_generation_prompt is not "
                              "a prefix of rendering it with the reply, so replies can't be located. "
                              "Use --template chatml/alpaca or a .jinja file that renders turns in order.")
        tail = full[at + len(reply):]
        added = set(getattr(tokenizer, "all_special_tokens", [])) | set(tokenizer.get_added_vocab())
        found = [(tail.find(t), -len(t), t) for t in added if t and t in tail]
        return cls(name, source, min(found)[2] if found else None, specials)

    def _render(self, messages, add_generation_prompt: bool) -> str:
        try:
            return _compile(self.source).render(
                messages=list(messages), add_generation_prompt=add_generation_prompt,
                **dict(self.special_tokens))
        except Exception as e:  # jinja2 errors, raise_exception() from the template itself
            raise TemplateRenderError(f"template {self.name}: {type(e).__name__}: {e}") from None

    def _reply_span(self, text: str, lo: int, content: str) -> tuple[int, int, int]:
        """(start, end of trained text, start of the next prompt) of the reply rendered after lo."""
        if self.stop is not None and self.stop in content:
            raise TemplateRenderError(f"reply contains the stop token text {self.stop!r}")
        stop_at = text.find(self.stop, lo) if self.stop is not None else len(text)
        for c in dict.fromkeys((content, content.strip())):
            start = text.rfind(c, lo, stop_at)
            if start >= 0:
                if self.stop is None:
                    return start, start + len(c), start + len(c)
                return start, stop_at, stop_at + len(self.stop)
        raise TemplateRenderError(f"template {self.name}: reply text not found in the rendering")

    def _segments(self, messages, generation_prompt):
        dicts = [{"role": m.role, "content": fold_input(m) if m.role == "user" else m.content}
                 for m in messages]
        segs: list[Segment] = []
        pos, done = 0, ""
        for i, m in enumerate(dicts):
            if m["role"] != "assistant":
                continue
            pre, full = self._render(dicts[:i], True), self._render(dicts[:i + 1], False)
            if not (full.startswith(pre) and full.startswith(done)):
                raise TemplateRenderError(f"template {self.name}: turn {i + 1} re-renders earlier "
                                          "turns differently, so reply spans are ambiguous")
            start, end, nxt = self._reply_span(full, len(pre), m["content"])
            segs += [Segment(full[pos:start], False), Segment(full[start:end], True)]
            pos, done = nxt, full[:nxt]
        if generation_prompt:
            text = self._render(dicts, True)
            if not text.startswith(done):
                raise TemplateRenderError(f"template {self.name}: prompt re-renders earlier turns")
            segs.append(Segment(text[pos:], False))
        return segs

    def to_chat_template(self) -> str:
        return self.source


# Conversations on which the exported chat_template must reproduce our prompt ids.
PROBES: tuple[tuple[Message, ...], ...] = (
    (Message("user", "Name three colors."),),
    (Message("user", "Translate to French.", "The cat is red."),),
    (Message("system", "Answer briefly."), Message("user", "What is 2 plus 2?")),
    (Message("user", "Hi"), Message("assistant", "Hello!"), Message("user", "Count to three.")),
)


def _as_dict(m: Message) -> dict:
    d = {"role": m.role, "content": m.content}
    if m.input:
        d["input"] = m.input
    return d


def check_chat_template(tokenizer, template) -> list[str]:
    """Mismatches between the tokenizer's apply_chat_template and our prompt encoding (the one
    training used) on the probe conversations the template supports. Empty: a model saved with
    this tokenizer is prompted by plain transformers exactly as in training. Needs no model."""
    from ..data.tokenize import encode_prompt

    problems = []
    for probe in PROBES:
        try:
            text = template.render_prompt(list(probe), eos_token=tokenizer.eos_token)
        except Exception:  # e.g. alpaca has no system message or turns: nothing to reproduce
            continue
        if any(m.content not in text or (m.input and m.input not in text) for m in probe):
            continue  # the template drops part of this conversation; not a meaningful probe
        ours = list(encode_prompt(list(probe), tokenizer, template))
        theirs = tokenizer.apply_chat_template([_as_dict(m) for m in probe], tokenize=True,
                                               add_generation_prompt=True, return_dict=False)
        if list(theirs) != ours:
            rendered = tokenizer.apply_chat_template([_as_dict(m) for m in probe], tokenize=False,
                                                     add_generation_prompt=True)
            what = (f"chat_template renders {rendered!r}, training renders {text!r}" if rendered != text
                    else f"same text, but ids {list(theirs)[:8]}... instead of {ours[:8]}...")
            problems.append(f"{[m.role for m in probe]}: {what}")
    return problems


def chat_template_for(tokenizer, template) -> str:
    """The template's Jinja, led by whatever makes apply_chat_template's ids equal our prompt ids.

    apply_chat_template tokenizes without adding special tokens, so a BOS that our prompts start
    with must come from the template (as in Llama-3's own). SentencePiece-style tokenizers
    (Metaspace, prepend_scheme "first") then drop the dummy-prefix space after that literal BOS,
    which our prompts have: a space after it restores it. The first lead-in that reproduces
    our ids on every probe wins; the self-check reports it if none does.
    """
    from ..data.tokenize import encode_prompt

    jinja = template.to_chat_template()
    leads = ["", "{{ bos_token }}", "{{ bos_token }} "] if tokenizer.bos_token else [""]
    saved = tokenizer.chat_template
    try:
        for lead in leads:
            tokenizer.chat_template = lead + jinja
            if not check_chat_template(tokenizer, template):
                return lead + jinja
    finally:
        tokenizer.chat_template = saved
    adds_bos = encode_prompt([Message("user", "Hi")], tokenizer, template)[:1] == [tokenizer.bos_token_id]
    return leads[1] + jinja if adds_bos else jinja
