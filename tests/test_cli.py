"""The CLI layer: typed config from flags and YAML, clear errors, no tracebacks."""

from __future__ import annotations

import pytest

from instruct_tune import cli
from instruct_tune.config import TrainConfig
from instruct_tune.errors import ConfigError


def test_flags_override_yaml(tmp_path):
    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text("model: base\ndata: d.jsonl\nout: o\nlr: 0.001\nlora: true\nbatch_size: 4\n")
    cfg = cli.parse("train", ["--config", str(cfg_file), "--lr", "0.5", "--max-length", "64"])
    assert isinstance(cfg, TrainConfig)
    assert (cfg.model, cfg.data, cfg.out, cfg.lora, cfg.batch_size) == ("base", "d.jsonl", "o", True, 4)
    assert cfg.lr == 0.5 and cfg.max_length == 64  # flags win over the YAML


def test_yaml_typo_is_reported_with_known_options(tmp_path):
    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text("learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match="learning_rate"):
        cli.parse("train", ["--config", str(cfg_file)])


def test_missing_yaml_is_a_user_error(capsys, tmp_path):
    code = cli.main(["train", "--config", str(tmp_path / "nope.yaml")])
    err = capsys.readouterr().err
    assert code == 2 and "not found" in err and "Traceback" not in err


def test_unknown_command_lists_commands(capsys):
    assert cli.main(["trian"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'trian'" in err and "Did you mean 'train'?" in err
    for name in cli.COMMANDS:
        assert name in err


def test_every_command_has_help(capsys):
    for name in cli.COMMANDS:
        assert cli.main([name, "--help"]) == 0
        assert f"instruct-tune {name}" in capsys.readouterr().out


def test_every_command_entry_point_exists():
    import importlib

    for name, (_, target, _) in cli.COMMANDS.items():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func)), name


def test_piped_output_is_not_wrapped_at_80_columns(tmp_path):
    """rich wraps at 80 columns off a terminal; a long line must reach a log file in one piece."""
    import json
    import os
    import subprocess
    import sys

    data = tmp_path / ("data_file_with_a_long_name_" * 4 + ".jsonl")
    data.write_text("".join(json.dumps({"instruction": f"Q{i}?", "output": "A."}) + "\n"
                            for i in range(5)))
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    proc = subprocess.run([sys.executable, "-m", "instruct_tune.cli", "audit", str(data)],
                          capture_output=True, text=True, env=env, timeout=120)
    header = next(ln for ln in proc.stdout.splitlines() if ln.startswith("Audit of"))
    assert str(data) in header and header.rstrip().endswith("s"), header
