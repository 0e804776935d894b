"""`instruct-tune <command>`: parse a typed config (flags and/or --config YAML), call the API.

Thin on purpose: every command is a function `run(config) -> int | None` in its stage's package,
so notebooks can call the same thing. User errors print one clear message, never a traceback.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import signal
import sys

import tyro

from . import config as C
from .errors import InstructTuneError

# name -> (config class, "module:function", one-line help)
COMMANDS: dict[str, tuple[type, str, str]] = {
    "inspect": (C.InspectConfig, "instruct_tune.data.inspect:run",
                "Show how rows are templated, tokenized and masked."),
    "audit": (C.AuditConfig, "instruct_tune.audit.report:run",
              "Audit a data set on size, task and phrasing diversity, output quality."),
    "train": (C.TrainConfig, "instruct_tune.evaluate.after_training:run",
              "Fine-tune a model (full or LoRA) on instruction data."),
    "eval": (C.EvalConfig, "instruct_tune.evaluate.compare:run",
             "Evaluate a model (optionally before/after) on held-out instructions."),
    "generate": (C.GenerateConfig, "instruct_tune.serve.generate_cmd:run",
                 "Answer one instruction with a trained model."),
    "chat": (C.ChatConfig, "instruct_tune.serve.chat:run", "Chat with a trained model."),
    "export": (C.ExportConfig, "instruct_tune.serve.export:run",
               "Merge LoRA and save a plain transformers model with its chat template."),
    "demo": (C.DemoConfig, "instruct_tune.demo.run:run",
             "Offline end-to-end demo: base model -> audit -> tune -> before/after eval."),
}


# Options a command cannot run without: --help marks them "(required)" and tyro names the missing
# ones before anything loads. A --config YAML may provide them.
REQUIRED: dict[str, tuple[str, ...]] = {
    "inspect": ("data", "model"), "audit": ("data",), "train": ("model", "data", "out"),
    "eval": ("model", "data"), "generate": ("instruction", "model"), "chat": ("model",),
    "export": ("model", "to"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {help_}" for name, (_, _, help_) in COMMANDS.items()]
    return ("usage: instruct-tune <command> [options]   (instruct-tune <command> --help)\n\n"
            "commands:\n" + "\n".join(lines))


def parse(name: str, argv: list[str]):
    """Build the command's config from an optional --config YAML, then the flags on top."""
    cls = COMMANDS[name][0]
    argv = list(argv)
    defaults = {}
    if "--config" in argv:
        i = argv.index("--config")
        if i + 1 >= len(argv):
            raise C.ConfigError("--config needs a path to a YAML file")
        defaults = C.load_yaml(argv[i + 1], cls)
        del argv[i:i + 2]
    missing = {f: tyro.MISSING for f in REQUIRED.get(name, ()) if not defaults.get(f)}
    default = dataclasses.replace(cls(), **defaults, **missing)
    return tyro.cli(cls, args=argv, default=default, prog=f"instruct-tune {name}",
                    description=f"{COMMANDS[name][2]}\n\nEvery option can also come from a YAML "
                    "file: --config FILE.yaml (keys as below with _ for -; flags override it).")


def _quiet_libraries() -> None:
    """Hide library noise that says nothing to our users: transformers' "Loading weights" /
    "Writing model shards" bars and info logs (peft's deprecation noise: see __init__). Env vars
    when transformers is not imported yet (so --help stays fast), its switches when it is."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if "transformers" in sys.modules:
        from transformers.utils import logging

        logging.disable_progress_bar()
        logging.set_verbosity_error()


def _wide_when_piped() -> None:
    """rich wraps at 80 columns when not on a terminal, which splits log lines and printed commands
    (a pasted `train --config X --resume` would lose --resume). rich reads COLUMNS."""
    if not any(s.isatty() for s in (sys.stdout, sys.stderr)) and "COLUMNS" not in os.environ:
        os.environ["COLUMNS"] = "240"


def main(argv: list[str] | None = None) -> int:
    if argv is None and hasattr(signal, "SIGPIPE"):
        # The real command line: `instruct-tune ... | head` ends quietly, like other Unix tools.
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["--version"], ["-V"]):
        from importlib.metadata import version

        print(f"instruct-tune {version('instruct-tune')}")
        return 0
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        from difflib import get_close_matches

        close = get_close_matches(name, list(COMMANDS), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        print(f"instruct-tune: unknown command '{name}'.{hint}\n\n{_usage()}", file=sys.stderr)
        return 2
    _wide_when_piped()
    try:
        try:
            cfg = parse(name, rest)
        except SystemExit as e:  # tyro printed --help or the argument error; callers get the code
            return e.code if isinstance(e.code, int) else 2
        _quiet_libraries()
        module, func = COMMANDS[name][1].split(":")
        code = getattr(importlib.import_module(module), func)(cfg)
        return int(code or 0)
    except InstructTuneError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
