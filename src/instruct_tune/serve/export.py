"""`instruct-tune export DIR --to OUT`: a plain transformers model that prompts and stops exactly
as in training.

OUT holds safetensors weights (a LoRA adapter merged in unless --no-merge), the tokenizer whose
`chat_template` renders our training prompt (so `apply_chat_template(messages,
add_generation_prompt=True)` gives the same ids `instruct-tune generate` uses), a
generation_config.json whose `eos_token_id` lists every stop token, and template.json: the files
of final/, written by the same writer (train/model_dir.py), so exporting final/ reproduces it.
The chat_template is checked against our own prompt encoding before anything is written.
"""

from __future__ import annotations

import os
from pathlib import Path

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
    from ..data.tokenize import stop_token_ids
    from ..evaluate.generate import err, resolve_template, tokenizer_dir
    from ..models import is_adapter_dir, load_model, load_tokenizer, make_shareable
    from ..train.model_dir import chat_template_problems, write_model_dir

    tokenizer = load_tokenizer(tokenizer_dir(src), trust_remote_code=trust_remote_code)
    tmpl = resolve_template(src, tokenizer, template)
    model = load_model(src, trust_remote_code=trust_remote_code, allow_pickle=allow_pickle)
    lora = is_adapter_dir(src)
    if lora and merge:
        model = model.merge_and_unload()

    problems = chat_template_problems(tokenizer, tmpl)
    if problems:
        err.print("[yellow]warning:[/] the exported chat_template does not reproduce the training "
                  "prompt, so plain transformers will prompt this model differently:\n  "
                  + "\n  ".join(problems))

    def install(tmp: Path, out: Path) -> None:
        # Its entries are moved one by one so that OUT's lock (held since the guard) stays.
        mark(tmp, EXPORT, entries=[p.name for p in tmp.iterdir()])  # what --overwrite may replace
        prepare(out, EXPORT, overwrite=overwrite)
        for entry in tmp.iterdir():
            os.replace(entry, out / entry.name)
        make_shareable(out)

    # Staged in a sibling temp dir, then moved in: a failed export leaves OUT untouched. The
    # files besides the weights are train/model_dir.py's, as in final/: eos_token_id lists every
    # stop id (the template's and EOS, then the model's own), so plain generate() stops like we do.
    core = model.get_base_model() if lora and not merge else model
    return write_model_dir(out, model.save_pretrained, core, tokenizer, tmpl,
                           stop_token_ids(tokenizer, tmpl), install=install)
