"""Prompt templates: a Record becomes text segments, each marked trainable or not.

The template decides the text; masks come from these segments, never from markers in the text or
from token ids. Convention: every trainable segment (an assistant reply) is followed by the
template's stop token, which the tokenizer step appends *by id* (never as text).

Two kinds share one interface:
- `FormatTemplate`: plain strings with {instruction}/{input}/{system} fields. alpaca, chatml, raw
  and custom `.yaml` files are this kind.
- `JinjaTemplate` (data/chat_template.py): a Jinja chat_template (the tokenizer's own, `model`,
  or a `.jinja` file).
  Reply spans are found by rendering the conversation progressively, so templates without
  `{% generation %}` markers work too.

Decisions (users see them in `inspect`):
- alpaca with a system message renders "{system}\\n\\n" before the first "### Instruction:".
- alpaca multi-turn: each reply is followed by the stop token (EOS); the next turn starts with
  "\\n\\n### Instruction:\\n...". Every assistant turn is trained.
- chatml / model templates get alpaca's `input` folded into the user text: instruction + "\\n\\n" + input.
- In the Jinja from `to_chat_template()`, alpaca's input is an "input" key on the user message:
  {"role": "user", "content": instruction, "input": input}.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from ..errors import ConfigError, InstructTuneError
from .records import Message, Record

TEMPLATE_FILE = "template.json"
_FIELD = re.compile(r"\{(instruction|input|system|content)\}")


@dataclass(frozen=True)
class Segment:
    text: str
    trainable: bool


def as_messages(messages: Sequence[Message | dict]) -> tuple[Message, ...]:
    """Accept Message objects or {"role", "content", "input"?} dicts."""
    return tuple(m if isinstance(m, Message) else
                 Message(m["role"], m.get("content") or "", m.get("input") or "") for m in messages)


def fold_input(m: Message) -> str:
    """User text for templates without a separate input block."""
    return f"{m.content}\n\n{m.input}" if m.input else m.content


def _fill(template: str, **values: str) -> str:
    # One pass, so user text that contains "{input}" is never substituted again.
    return _FIELD.sub(lambda m: values.get(m.group(1), m.group(0)), template)


class Template:
    """Base class: `name`, `stop` (token text; None means the tokenizer's EOS)."""

    name: str
    stop: str | None

    def render(self, record: Record) -> list[Segment]:
        """Training segments: prompts (not trainable) and replies (trainable, each then + stop)."""
        return self._segments(record.messages, generation_prompt=False)

    def prompt_segments(self, messages: Sequence[Message | dict]) -> list[Segment]:
        """Segments of an inference prompt: history (replies trainable) + the generation prompt."""
        return self._segments(as_messages(messages), generation_prompt=True)

    def render_prompt(self, messages: Sequence[Message | dict], eos_token: str | None = None) -> str:
        """The inference prompt as text, ending with the generation prompt (e.g. "### Response:\\n")."""
        stop = self.stop if self.stop is not None else eos_token
        parts = []
        for seg in self.prompt_segments(messages):
            parts.append(seg.text)
            if seg.trainable:
                if stop is None:
                    raise ValueError("render_prompt needs eos_token for history with replies")
                parts.append(stop)
        return "".join(parts)

    def render_text(self, record: Record, eos_token: str) -> str:
        """The whole formatted training string, stop token text included (for display)."""
        stop = self.stop if self.stop is not None else eos_token
        return "".join(s.text + (stop if s.trainable else "") for s in self.render(record))

    def _segments(self, messages: tuple[Message, ...], generation_prompt: bool) -> list[Segment]:
        raise NotImplementedError

    def to_chat_template(self) -> str:
        """A Jinja chat_template that reproduces `render_prompt` with add_generation_prompt=True."""
        raise NotImplementedError

    def to_dict(self) -> dict:
        return {"kind": self.kind, **asdict(self)}  # type: ignore[call-overload]

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / TEMPLATE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n")
        return path

    @staticmethod
    def from_dict(d: dict) -> Template:
        d = dict(d)
        kind = d.pop("kind", None)
        if kind == "format":
            return FormatTemplate(**d)
        if kind == "jinja":
            from .chat_template import JinjaTemplate

            d["special_tokens"] = tuple(tuple(p) for p in d.get("special_tokens", ()))
            return JinjaTemplate(**d)
        raise ConfigError(f"unknown template kind {kind!r}")

    @staticmethod
    def load(directory: str | Path) -> Template | None:
        """The template saved in a run/model directory, or None when there is none."""
        path = Path(directory) / TEMPLATE_FILE
        if not path.is_file():
            return None
        try:
            return Template.from_dict(json.loads(path.read_text()))
        except (json.JSONDecodeError, TypeError) as e:
            raise ConfigError(f"{path}: not a valid instruct-tune template ({e})") from None


@dataclass(frozen=True)
class FormatTemplate(Template):
    """Strings with {instruction}, {input}, {system} fields.

    Rendered as: system? then per turn: user (or user_with_input) + assistant + REPLY + stop,
    with `after_stop` between a reply's stop token and the next message.
    """

    name: str
    user: str
    user_with_input: str = ""
    assistant: str = ""  # the generation prompt, e.g. "### Response:\n"
    system: str = "{system}\n\n"
    after_stop: str = ""
    stop: str | None = None
    kind = "format"

    def _user_text(self, m: Message) -> str:
        if m.input and self.user_with_input:
            return _fill(self.user_with_input, instruction=m.content, content=m.content, input=m.input)
        return _fill(self.user, instruction=fold_input(m), content=fold_input(m), input="")

    def _segments(self, messages, generation_prompt):
        segs: list[Segment] = []
        buf, after_reply = "", False
        for m in messages:
            if after_reply:
                buf, after_reply = buf + self.after_stop, False
            if m.role == "system":
                buf += _fill(self.system, system=m.content, content=m.content)
            elif m.role == "user":
                buf += self._user_text(m)
            else:
                segs += [Segment(buf + self.assistant, False), Segment(m.content, True)]
                buf, after_reply = "", True
        if generation_prompt:
            segs.append(Segment(buf + (self.after_stop if after_reply else "") + self.assistant, False))
        return segs

    def to_chat_template(self) -> str:
        def expr(template: str, var: str) -> str:
            # Literal text as JSON-quoted Jinja strings: immune to trim_blocks and to braces.
            parts = []
            for i, piece in enumerate(_FIELD.split(template)):
                if i % 2 == 0:
                    if piece:
                        parts.append(json.dumps(piece, ensure_ascii=False))
                else:
                    parts.append({"instruction": f"{var}['content']", "content": f"{var}['content']",
                                  "system": f"{var}['content']", "input": f"{var}['input']"}[piece])
            return "{{ " + (" + ".join(parts) or '""') + " }}"

        stop = "eos_token" if self.stop is None else json.dumps(self.stop, ensure_ascii=False)
        has_input = "message['input'] is defined and message['input']"
        folded = ("{% set message = {'content': message['content'] + '\\n\\n' + message['input']}"
                  " if " + has_input + " else message %}")
        user = (f"{{% if {has_input} %}}{expr(self.user_with_input, 'message')}{{% else %}}"
                f"{folded}{expr(self.user, 'message')}{{% endif %}}") if self.user_with_input \
            else f"{folded}{expr(self.user, 'message')}"
        after = json.dumps(self.after_stop, ensure_ascii=False)
        return (
            "{% for message in messages %}"
            "{% if loop.index0 > 0 and messages[loop.index0 - 1]['role'] == 'assistant' %}"
            f"{{{{ {after} }}}}{{% endif %}}"
            f"{{% if message['role'] == 'system' %}}{expr(self.system, 'message')}"
            f"{{% elif message['role'] == 'user' %}}{user}"
            f"{{% elif message['role'] == 'assistant' %}}{expr(self.assistant, 'message')}"
            f"{{{{ message['content'] + {stop} }}}}"
            "{% endif %}{% endfor %}"
            f"{{% if add_generation_prompt %}}"
            f"{{% if messages and messages[-1]['role'] == 'assistant' %}}{{{{ {after} }}}}{{% endif %}}"
            f"{expr(self.assistant, 'message')}{{% endif %}}")


class TemplateRenderError(InstructTuneError):
    """A template could not render a conversation (reported per row by the tokenizer step)."""


ALPACA = FormatTemplate(
    name="alpaca",
    user="### Instruction:\n{instruction}\n\n",
    user_with_input="### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n",
    assistant="### Response:\n",
    system="{system}\n\n",
    after_stop="\n\n",
    stop=None,
)
CHATML = FormatTemplate(
    name="chatml",
    user="<|im_start|>user\n{instruction}<|im_end|>\n",
    assistant="<|im_start|>assistant\n",
    system="<|im_start|>system\n{system}<|im_end|>\n",
    after_stop="\n",
    stop="<|im_end|>",
)
RAW = FormatTemplate(name="raw", user="{instruction}", system="{system}\n\n", stop=None)
BUILTIN = {"alpaca": ALPACA, "chatml": CHATML, "raw": RAW}
_YAML_KEYS = {"name", "user", "prompt", "user_with_input", "prompt_with_input", "assistant",
              "system", "after_stop", "stop"}


def _from_yaml(path: Path) -> FormatTemplate:
    try:
        d = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(d, dict):
        raise ConfigError(f"{path}: expected a mapping with keys like 'user', 'assistant', 'stop'")
    unknown = sorted(set(d) - _YAML_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown template key(s) {unknown}; known: {sorted(_YAML_KEYS)}")
    for k, v in d.items():
        if v is not None and not isinstance(v, str):
            raise ConfigError(f"{path} [{k}]: must be a string")
        if isinstance(v, str) and "{output}" in v:
            raise ConfigError(f"{path} [{k}]: the reply is not a field; end the prompt with the text "
                              "that precedes it (e.g. user: '### Q:\\n{instruction}\\n', assistant: '### A:\\n')")
    user = d.get("user", d.get("prompt"))
    if not user:
        raise ConfigError(f"{path}: needs a 'user' string containing {{instruction}}")
    return FormatTemplate(
        name=d.get("name") or f"custom:{path.name}", user=user,
        user_with_input=d.get("user_with_input", d.get("prompt_with_input")) or "",
        assistant=d.get("assistant") or "", system=d.get("system", "{system}\n\n") or "",
        after_stop=d.get("after_stop") or "", stop=d.get("stop"))


def default_template(model: str | None) -> str:
    """The template to use when none is given: the one saved with the model (a run's final/ or
    checkpoint holds template.json), else alpaca."""
    return str(model) if model and (Path(model) / TEMPLATE_FILE).is_file() else "alpaca"


def get_template(name_or_path: str | None, tokenizer=None) -> Template:
    """alpaca (default), chatml, raw, model (the tokenizer's chat_template), a .yaml/.jinja file, or
    a directory holding a saved template.json."""
    from .chat_template import JinjaTemplate

    name = name_or_path or "alpaca"
    if name in BUILTIN:
        return BUILTIN[name]
    if name == "model":
        if tokenizer is None:
            raise ConfigError("--template model needs a tokenizer (pass --model)")
        if not getattr(tokenizer, "chat_template", None):
            raise ConfigError("--template model: this tokenizer has no chat_template. "
                              "Use --template alpaca or chatml, or a .jinja file.")
        source = tokenizer.chat_template
        if isinstance(source, dict):  # several named templates: the default one is for chat
            source = source.get("default") or next(iter(source.values()))
        return JinjaTemplate.from_tokenizer(tokenizer, source, "model")
    path = Path(name)
    if path.is_dir():
        saved = Template.load(path)
        if saved is None:
            raise ConfigError(f"--template {name}: directory has no {TEMPLATE_FILE}")
        return saved
    if path.suffix in (".yaml", ".yml", ".jinja", ".j2"):
        if not path.is_file():
            raise ConfigError(f"--template {name}: file not found")
        if path.suffix in (".yaml", ".yml"):
            return _from_yaml(path)
        if tokenizer is None:
            raise ConfigError(f"--template {name}: a Jinja template needs a tokenizer (pass --model)")
        return JinjaTemplate.from_tokenizer(tokenizer, path.read_text(), f"custom:{path.name}")
    raise ConfigError(f"Unknown template '{name}'. Use alpaca, chatml, raw, model, "
                      "or a path to a .yaml/.jinja file.")
