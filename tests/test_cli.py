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


def test_every_command_entry_point_exists_and_is_cheap_to_import():
    """A command module imports its stage inside run(), so option and path checks happen before
    torch loads (checked in a fresh interpreter)."""
    import subprocess
    import sys

    code = ("import sys, importlib\n"
            f"for name in {list(cli.COMMANDS)!r}:\n"
            "    m = importlib.import_module('instruct_tune.commands.' + name)\n"
            "    assert callable(m.run), name\n"
            "print(sorted(k for k in ('torch', 'transformers') if k in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


@pytest.mark.parametrize("argv, field, value", [
    (["chat", "DIR"], "model", "DIR"),
    (["chat", "--model", "DIR"], "model", "DIR"),
    (["export", "DIR", "--to", "OUT"], "model", "DIR"),
    (["export", "--model", "DIR", "--to", "OUT"], "model", "DIR"),
    (["inspect", "d.jsonl", "--model", "M"], "data", "d.jsonl"),
    (["inspect", "--data", "d.jsonl", "--model", "M", "-n", "2"], "data", "d.jsonl"),
    (["audit", "--data", "d.jsonl", "--json"], "data", "d.jsonl"),
    (["eval", "DIR", "--data", "e.jsonl"], "model", "DIR"),
])
def test_positional_and_flag_forms_mean_the_same(argv, field, value):
    cfg = cli.parse(argv[0], argv[1:])
    assert getattr(cfg, field) == value


@pytest.mark.parametrize("argv", [["generate", "DIR", "hi there"],
                                  ["generate", "hi there", "--model", "DIR"],
                                  ["generate", "--model", "DIR", "hi there"],
                                  ["generate", "--temperature", "0.5", "DIR", "hi there"]])
def test_generate_takes_model_then_instruction_or_model_as_flag(argv):
    cfg = cli.parse(argv[0], argv[1:])
    assert (cfg.model, cfg.instruction) == ("DIR", "hi there")


@pytest.mark.parametrize("flag, value, named", [
    ("--lr", "0", "--lr must be > 0"), ("--batch-size", "0", "--batch-size must be >= 1"),
    ("--grad-accum", "0", "--grad-accum must be >= 1"), ("--epochs", "0", "--epochs must be > 0"),
    ("--max-time", "5x", "--max-time '5x'"), ("--eval-split", "1.5", "--eval-split must be in [0, 1)"),
])
def test_bad_train_options_fail_before_heavy_imports(tmp_path, flag, value, named):
    """The error names the bad option and comes from a process that never imported torch."""
    import subprocess
    import sys

    code = ("import sys; from instruct_tune import cli\n"
            f"code = cli.main(['train', '--model', 'm', '--data', 'd', '--out', 'o', {flag!r}, {value!r}])\n"
            "print(code, 'torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert proc.stdout.split() == ["2", "False"], proc.stdout + proc.stderr
    assert named in proc.stderr


def test_lora_rank_zero_is_named_and_lora_options_without_lora_warn(capsys):
    from instruct_tune.config import check

    with pytest.raises(ConfigError, match=r"--lora-r must be >= 1 \(got 0\)") as e:
        check(TrainConfig(model="m", data="d", out="o", lora=True, lora_r=0))
    assert "dropout" not in str(e.value)
    warnings = check(TrainConfig(model="m", data="d", out="o", lora_r=0))
    assert len(warnings) == 1 and "--lora-r" in warnings[0] and "without --lora" in warnings[0]
    assert check(TrainConfig(model="m", data="d", out="o", lora=True, lora_r=4)) == []


def test_a_runs_config_yaml_feeds_other_commands(tmp_path):
    """A train run's config.yaml given to eval/audit: train-only keys are skipped and named once,
    while a typo is still an error."""
    from instruct_tune.config_file import save_yaml

    run_yaml = tmp_path / "config.yaml"
    save_yaml(TrainConfig(model="m", data="d.jsonl", out="o", lr=1e-3, batch_size=4), run_yaml)
    notes: list[str] = []
    cfg = cli.parse("audit", ["--config", str(run_yaml)], notes)
    assert cfg.data == "d.jsonl" and cfg.model == "m"
    assert len(notes) == 1 and "batch_size" in notes[0] and "lr" in notes[0]
    typo = tmp_path / "typo.yaml"
    typo.write_text("data: d.jsonl\nbatch_szie: 3\n")
    with pytest.raises(ConfigError, match="did you mean batch_size"):
        cli.parse("train", ["--config", str(typo)])


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
