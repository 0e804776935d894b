"""`instruct-tune export DIR --to OUT`: a plain transformers model that prompts and stops exactly
as in training.

OUT holds safetensors weights (a LoRA adapter merged in unless --no-merge), the tokenizer whose
`chat_template` renders our training prompt (so `apply_chat_template(messages,
add_generation_prompt=True)` gives the same ids `instruct-tune generate` uses), a
generation_config.json whose `eos_token_id` lists every stop token, and template.json. The export
is checked against our own prompt encoding before it is moved into place.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from ..data.records import Message
from ..errors import ConfigError
from ..evaluate.generate import Generator, err, resolve_template, tokenizer_dir

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


def _prepare_out(src: Path, out: Path, overwrite: bool) -> None:
    if out.resolve() == src.resolve() or src.resolve() in out.resolve().parents \
            or out.resolve() in src.resolve().parents:
        raise ConfigError(f"--to {out} overlaps the model directory {src}; pick another directory.")
    if out.is_file():
        raise ConfigError(f"--to {out} is a file; give a directory.")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"{out} is not empty. Pick a new directory or pass --overwrite to replace "
                          "its contents.")


def export(model_dir: str | os.PathLike, out: str | os.PathLike, *, merge: bool = True,
           overwrite: bool = False, template: str | None = None, trust_remote_code: bool = False,
           allow_pickle: bool = False) -> Path:
    """Write a self-contained transformers model directory to `out`; returns its path."""
    from ..train.model import is_adapter_dir, load_model, load_tokenizer

    src, out = Path(model_dir), Path(out)
    if not src.is_dir():
        raise ConfigError(f"{src} is not a directory; export expects a trained run's final/ directory.")
    _prepare_out(src, out, overwrite)
    tokenizer = load_tokenizer(tokenizer_dir(src), trust_remote_code=trust_remote_code)
    tmpl = resolve_template(src, tokenizer, template)
    model = load_model(src, trust_remote_code=trust_remote_code, allow_pickle=allow_pickle)
    lora = is_adapter_dir(src)
    if lora and merge:
        model = model.merge_and_unload()
    gen = Generator(model, tokenizer, tmpl, name=str(src), device="cpu")

    tokenizer.chat_template = chat_template_for(tokenizer, tmpl)
    problems = check_chat_template(tokenizer, tmpl)
    if problems:
        err.print("[yellow]warning:[/] the exported chat_template does not reproduce the training "
                  "prompt, so plain transformers will prompt this model differently:\n  "
                  + "\n  ".join(problems))

    gc = model.generation_config
    gc.eos_token_id = list(gen.stop_ids)  # every stop token, so plain generate() stops like we do
    gc.pad_token_id = gen.pad_id
    if tokenizer.bos_token_id is not None:
        gc.bos_token_id = tokenizer.bos_token_id

    # Write into a sibling temp dir and move it into place: a failed export leaves OUT untouched.
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(tmp)  # safetensors; an unmerged PeftModel saves just its adapter
        if lora and not merge:
            gc.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        tmpl.save(tmp)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def run(cfg) -> int:
    if not cfg.model:
        raise ConfigError("export needs a model directory: instruct-tune export DIR --to OUT")
    if not cfg.to:
        raise ConfigError("export needs --to OUT (the directory to write).")
    out = export(cfg.model, cfg.to, merge=cfg.merge, overwrite=cfg.overwrite, template=cfg.template,
                 trust_remote_code=cfg.trust_remote_code, allow_pickle=cfg.allow_pickle)
    err.print(f"exported to {out}: load it with AutoModelForCausalLM.from_pretrained('{out}') and "
              "prompt it with tokenizer.apply_chat_template(messages, add_generation_prompt=True).")
    return 0
