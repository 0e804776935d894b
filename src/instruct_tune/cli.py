"""`instruct-tune <command>`: parse a typed config (flags and/or --config YAML), call the API.

Thin on purpose: every command is `instruct_tune.commands.<name>.run(config) -> int`, so notebooks
can call the same thing. User errors print one clear message, never a traceback.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import signal
import sys

import tyro

from . import config as C
from .config_file import load_yaml
from .errors import InstructTuneError

# name -> (config class, one-line help); the command itself is instruct_tune.commands.<name>:run.
COMMANDS: dict[str, tuple[type, str]] = {
    "inspect": (C.InspectConfig, "Show how rows are templated, tokenized and masked."),
    "audit": (C.AuditConfig, "Audit a data set on size, task and phrasing diversity, output quality."),
    "curate": (C.CurateConfig, "Write a cleaned training file: drop what audit finds, mix sources by share."),
    "train": (C.TrainConfig, "Fine-tune a model (full or LoRA) on instruction data."),
    "eval": (C.EvalConfig, "Evaluate a model (optionally before/after) on held-out instructions."),
    "generate": (C.GenerateConfig, "Answer one instruction with a trained model."),
    "chat": (C.ChatConfig, "Chat with a trained model."),
    "export": (C.ExportConfig, "Merge LoRA and save a plain transformers model with its chat template."),
    "demo": (C.DemoConfig, "Offline end-to-end demo: base model -> audit -> tune -> before/after eval."),
    "report": (C.ReportConfig, "Write RUN_DIR/report.html: config, curves, before/after, samples, audit."),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    return ("usage: instruct-tune <command> [options]   (instruct-tune <command> --help)\n\n"
            "commands:\n" + "\n".join(lines))


def parse(name: str, argv: list[str], notes: list[str] | None = None):
    """Build the command's config from an optional --config YAML, then the flags on top. Keys of
    the YAML that belong to other commands are skipped and named in `notes`."""
    cls = COMMANDS[name][0]
    argv = list(argv)
    defaults = {}
    if "--config" in argv:
        i = argv.index("--config")
        if i + 1 >= len(argv):
            raise C.ConfigError("--config needs a path to a YAML file")
        ignored: list[str] = []
        defaults = load_yaml(argv[i + 1], cls, ignored)
        if ignored and notes is not None:
            notes.append(f"note: {argv[i + 1]}: ignoring option{'s' if len(ignored) > 1 else ''} "
                         f"that {name} does not take: {', '.join(ignored)}")
        del argv[i:i + 2]
    argv = positionals_as_flags(cls, argv, given=set(defaults))
    missing = {f: tyro.MISSING for f in cls.required if not defaults.get(f)}
    default = dataclasses.replace(cls(), **defaults, **missing)
    usage = " ".join(f.upper() for f in cls.positional)
    return tyro.cli(cls, args=argv, default=default, prog=f"instruct-tune {name}",
                    description=f"{COMMANDS[name][1]}\n\n"
                    + (f"usage: instruct-tune {name} {usage} [options]  ({', '.join('--' + f.replace('_', '-') for f in cls.positional)} "
                       "may also be given as flags)\n\n" if usage else "")
                    + "Every option can also come from a YAML file: --config FILE.yaml (keys as "
                    "below with _ for -; flags override it).")


def positionals_as_flags(cls: type, argv: list[str], given: set[str] = frozenset()) -> list[str]:
    """`chat DIR`, `generate DIR "hi"`, `inspect DATA`: bare arguments become the command's
    positional options in order (`cls.positional`), skipping those already given as flags or in
    the YAML, so `generate --model DIR "hi"` and `generate DIR "hi"` mean the same."""
    bools = {f.name for f in dataclasses.fields(cls) if f.type in ("bool", bool)}
    flags, bare, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            bare += argv[i + 1:]
            break
        if arg.startswith("-") and len(arg) > 1 and not _is_number(arg):
            flags.append(arg)
            name = arg.lstrip("-").split("=")[0].replace("-", "_")
            given = given | {name}
            takes_value = "=" not in arg and name not in bools and not (
                name.startswith("no_") and name[3:] in bools) and name not in ("h", "help")
            if takes_value and i + 1 < len(argv):
                flags.append(argv[i + 1])
                i += 1
        else:
            bare.append(arg)
        i += 1
    slots = [f for f in cls.positional if f not in given]
    # Fewer arguments than open slots fill the last ones: `generate "Hi"` is an instruction
    # (and --model is missing), `generate DIR "Hi"` a model and an instruction.
    slots = slots[max(0, len(slots) - len(bare)):]
    for field, value in zip(slots, bare, strict=False):
        flags += [f"--{field.replace('_', '-')}", value]
    return flags + bare[len(slots):]  # extra bare arguments: tyro names them


def _is_number(arg: str) -> bool:
    try:
        float(arg)
    except ValueError:
        return False
    return True


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
        notes: list[str] = []
        try:
            cfg = parse(name, rest, notes)
        except SystemExit as e:  # tyro printed --help or the argument error; callers get the code
            return e.code if isinstance(e.code, int) else 2
        # Everything that can be checked without loading: before torch/transformers are imported.
        for line in notes + [f"warning: {w}" for w in C.check(cfg)]:
            print(line, file=sys.stderr)
        command = importlib.import_module(f"instruct_tune.commands.{name}")
        if hasattr(command, "preflight"):
            command.preflight(cfg)
        _quiet_libraries()
        return int(command.run(cfg) or 0)
    except InstructTuneError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
