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

from ..data.chat_template import chat_template_for, check_chat_template
from ..errors import ConfigError
from ..outdir import EXPORT, guard, mark, prepare, release


def check_target(src: Path, out: Path, overwrite: bool) -> Path:
    """Fail before anything loads if `out` may not be written (the one guard: ..outdir; it may
    not overlap the model directory either), then claim it for this process."""
    return guard(out, EXPORT, flag="--to", overwrite=overwrite, inputs=[("the model directory", src)])


def export(model_dir: str | os.PathLike, out: str | os.PathLike, *, merge: bool = True,
           overwrite: bool = False, template: str | None = None, trust_remote_code: bool = False,
           allow_pickle: bool = False) -> Path:
    """Write a self-contained transformers model directory to `out`; returns its path."""
    src, out = Path(model_dir), Path(out)
    if not src.is_dir():
        raise ConfigError(f"{src} is not a directory; export expects a trained run's final/ directory.")
    check_target(src, out, overwrite)
    try:
        return _export(src, out, merge=merge, overwrite=overwrite, template=template,
                       trust_remote_code=trust_remote_code, allow_pickle=allow_pickle)
    finally:
        release(out)


def _export(src: Path, out: Path, *, merge: bool, overwrite: bool, template: str | None,
            trust_remote_code: bool, allow_pickle: bool) -> Path:
    from ..evaluate.generate import Generator, err, resolve_template, tokenizer_dir
    from ..models import is_adapter_dir, load_model, load_tokenizer, make_shareable

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

    # Write into a sibling temp dir, then move it in: a failed export leaves OUT untouched. Its
    # entries are moved one by one so that OUT's lock (held since the guard) stays in place.
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(tmp)  # safetensors; an unmerged PeftModel saves just its adapter
        if lora and not merge:
            gc.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        tmpl.save(tmp)
        mark(tmp, EXPORT, entries=[p.name for p in tmp.iterdir()])  # what --overwrite may replace
        make_shareable(tmp)  # mkdtemp made it 0700: a serving container could not read it
        prepare(out, EXPORT, overwrite=overwrite)
        for entry in tmp.iterdir():
            os.replace(entry, out / entry.name)
        make_shareable(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
