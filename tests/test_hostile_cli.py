"""Hostile input at the model and flag level (issue 9, "Bad input"), through the real CLI.

Every case runs `instruct-tune ...` in-process (`cli.main`) and must end with exit code 2 and a
message saying what is wrong, where, and what to do: never a traceback (an exception escaping
`cli.main` fails the test, and so does "Traceback" in the output) and never a hang (each run is
under an alarm). The tables below are the corpus; the number of test ids is the count.
Data-file hostility is in tests/data/test_hostile_inputs.py, loading safety (pickle, remote code,
checkpoints) in tests/test_loading_safety.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from instruct_tune import cli

# ---------------------------------------------------------------------------------------------
# Running the CLI


def run_cli(capsys, *argv, timeout: int = 120) -> tuple[int, str, str]:
    """`instruct-tune ARGV` in-process -> (exit code, stdout, stderr). tyro's argument errors end
    in SystemExit (its own message, exit 2); any other exception escapes and fails the test."""
    def hang(signum, frame):
        raise TimeoutError(f"instruct-tune {' '.join(map(str, argv))} ran over {timeout}s")

    old = signal.signal(signal.SIGALRM, hang)
    signal.alarm(timeout)
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def assert_refused(code: int, err: str, *words: str) -> None:
    """Exit 2 with one `error:` message that contains every word (case-insensitive)."""
    assert code == 2, err
    assert "error:" in err, err
    for w in words:
        assert w.lower() in err.lower(), f"{w!r} not in: {err}"



@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "train.jsonl"
    rows = [{"instruction": f"Say {w}.", "output": w} for w in ("yes", "no", "cat", "dog", "sun", "day")]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ---------------------------------------------------------------------------------------------
# Broken model directories, for every command that loads a model or a tokenizer


def _edit_json(path: Path, **changes) -> None:
    d = json.loads(path.read_text())
    for k, v in changes.items():
        if v is None:
            d.pop(k, None)
        else:
            d[k] = v
    path.write_text(json.dumps(d))


def _unlink(*names: str) -> Callable[[Path], None]:
    return lambda d: [(d / n).unlink() for n in names]


def _write(name: str, data: bytes) -> Callable[[Path], None]:
    return lambda d: (d / name).write_bytes(data)


def _truncate(name: str) -> Callable[[Path], None]:
    def cut(d: Path) -> None:
        b = (d / name).read_bytes()
        (d / name).write_bytes(b[: len(b) // 2])
    return cut


def _empty(d: Path) -> None:
    for p in d.iterdir():
        p.unlink()


def _adapter(base: str | None) -> Callable[[Path], None]:
    """Turn the directory into a LoRA adapter (adapter + tokenizer) whose base is `base`."""
    def build(d: Path) -> None:
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM

        model = get_peft_model(AutoModelForCausalLM.from_pretrained(d),
                               LoraConfig(r=2, target_modules="all-linear", task_type="CAUSAL_LM"))
        model.save_pretrained(d)
        _unlink("model.safetensors", "config.json")(d)
        _edit_json(d / "adapter_config.json", base_model_name_or_path=base)
    return build


# id -> (how to break a copy of a good model dir, words the error must contain). Words name
# what is wrong and what to do; "{dir}" is replaced by the broken directory's path.
TOKENIZER_CASES: dict[str, tuple[Callable[[Path], None] | str, tuple[str, ...]]] = {
    "no-tokenizer": (_unlink("tokenizer.json", "tokenizer_config.json"),
                     ("{dir}", "no tokenizer files", "save_pretrained")),
    "tokenizer-without-eos": (lambda d: _edit_json(d / "tokenizer_config.json", eos_token=None),
                              ("{dir}", "no EOS token", "never learn to stop", "eos_token")),
    "corrupt-tokenizer-json": (_truncate("tokenizer.json"),
                               ("{dir}", "no loadable tokenizer", "save_pretrained")),
    "damaged-config-json": (_write("config.json", b'{"model_type": "llama",'),
                            ("{dir}/config.json", "not valid JSON", "re-download")),
    "empty-dir": (_empty, ("{dir}", "no tokenizer files")),
    "model-is-a-file": ("file", ("config.json", "directory")),
    "missing-path": ("missing", ("no-such-model", "no such directory", "hub name")),
    "hub-name-offline": ("hub", ("nobody-here/no-such-model", "not a local directory",
                                 "HF_HUB_OFFLINE=1", "hf download", "local model directory")),
}
MODEL_CASES: dict[str, tuple[Callable[[Path], None], tuple[str, ...]]] = {
    "config-but-no-weights": (_unlink("model.safetensors"),
                              ("{dir}", "no weights", "*.safetensors", "save_pretrained")),
    "garbage-safetensors": (_write("model.safetensors", b"\x00" * 64),
                            ("{dir}", "damaged or incomplete", "re-download")),
    "truncated-safetensors": (_truncate("model.safetensors"),
                              ("{dir}", "damaged or incomplete", "interrupted")),
    "unknown-model-type": (lambda d: _edit_json(d / "config.json", model_type="nosuchmodel"),
                           ("{dir}", "nosuchmodel", "does not recognize", "out of date")),
    "adapter-base-missing": (_adapter("/nonexistent/base-model"),
                             ("{dir}", "LoRA adapter", "/nonexistent/base-model", "no such directory",
                              "base_model_name_or_path")),
    "adapter-config-damaged": (lambda d: (_adapter("x")(d), _write("adapter_config.json", b"{")(d)),
                               ("{dir}/adapter_config.json", "not valid JSON")),
}


def command(name: str, model: str, data: Path, tmp: Path) -> list[str]:
    return {
        "generate": ["generate", "Say yes.", "--model", model, "--max-new-tokens", "2"],
        "chat": ["chat", model],
        "eval": ["eval", "--model", model, "--data", data, "--max-new-tokens", "2"],
        "export": ["export", model, "--to", tmp / "exported"],
        "train": ["train", "--model", model, "--data", data, "--out", tmp / "run", "--max-steps",
                  "1", "--cache-dir", "none", "--quiet"],
        "inspect": ["inspect", data, "--model", model, "--cache-dir", "none"],
        "audit": ["audit", data, "--model", model],
    }[name]


MODEL_COMMANDS = ("generate", "chat", "eval", "export", "train")
TOKENIZER_COMMANDS = ("inspect", "audit")


def broken_model(case: str, model_dirs, tmp_path: Path) -> tuple[str, str]:
    """(the --model argument, the path the message must name) for a case."""
    build = {**TOKENIZER_CASES, **MODEL_CASES}[case][0]
    good = model_dirs["llama"]
    if build == "file":
        return str(good / "config.json"), str(good / "config.json")
    if build == "missing":
        return str(tmp_path / "no-such-model"), str(tmp_path / "no-such-model")
    if build == "hub":
        return "nobody-here/no-such-model", "nobody-here/no-such-model"
    d = tmp_path / "broken"
    shutil.copytree(good, d)
    build(d)
    return str(d), str(d)


@pytest.mark.parametrize("cmd", MODEL_COMMANDS + TOKENIZER_COMMANDS)
@pytest.mark.parametrize("case", list(TOKENIZER_CASES))
def test_broken_tokenizer_or_model_path(case, cmd, model_dirs, data_file, tmp_path, capsys):
    model, where = broken_model(case, model_dirs, tmp_path)
    t0 = time.perf_counter()
    code, _, err = run_cli(capsys, *command(cmd, model, data_file, tmp_path))
    words = [w.replace("{dir}", where) for w in TOKENIZER_CASES[case][1]]
    if cmd == "export" and case in ("missing-path", "hub-name-offline"):
        words = [where, "is not a directory", "final/ directory"]  # export takes local dirs only
    assert_refused(code, err, *words)
    assert time.perf_counter() - t0 < 60  # offline hub names fail fast, no network retries


# train takes a base model, not an adapter directory: those pairs are not generated at all.
WEIGHT_CASES = [(case, cmd) for case in MODEL_CASES for cmd in MODEL_COMMANDS
                if not (case.startswith("adapter") and cmd == "train")]


@pytest.mark.parametrize("case, cmd", WEIGHT_CASES, ids=[f"{c}-{m}" for c, m in WEIGHT_CASES])
def test_broken_weights(case, cmd, model_dirs, data_file, tmp_path, capsys):
    model, where = broken_model(case, model_dirs, tmp_path)
    code, _, err = run_cli(capsys, *command(cmd, model, data_file, tmp_path))
    assert_refused(code, err, *[w.replace("{dir}", where) for w in MODEL_CASES[case][1]])
    assert not (tmp_path / "run").exists() and not (tmp_path / "exported").exists()


@pytest.mark.parametrize("cmd", TOKENIZER_COMMANDS)
def test_tokenizer_commands_do_not_need_weights(cmd, model_dirs, data_file, tmp_path, capsys):
    """inspect and audit read only the tokenizer: damaged weights are no reason to refuse."""
    model, _ = broken_model("garbage-safetensors", model_dirs, tmp_path)
    code, _, err = run_cli(capsys, *command(cmd, model, data_file, tmp_path))
    assert code == 0, err


# ---------------------------------------------------------------------------------------------
# Conflicting and invalid flags: each is refused before any data or model is loaded


TRAIN_FLAGS: list[tuple[list[str], tuple[str, ...]]] = [
    (["--resume", "--overwrite"], ("Conflicting options", "--resume", "--overwrite", "only one")),
    (["--eval-split", "0.1", "--eval-data", "{data}"], ("Conflicting", "--eval-data", "--eval-split")),
    (["--batch-size", "0"], ("--batch-size", ">= 1")),
    (["--batch-size", "-4"], ("--batch-size", ">= 1")),
    (["--max-length", "0"], ("--max-length", ">= 2")),
    (["--max-length", "-1"], ("--max-length", ">= 2")),
    (["--grad-accum", "0"], ("--grad-accum", ">= 1")),
    (["--grad-accum", "-2"], ("--grad-accum", ">= 1")),
    (["--epochs", "0"], ("--epochs", "> 0")),
    (["--epochs", "-1"], ("--epochs", "> 0")),
    (["--max-steps", "0"], ("--max-steps", ">= 1")),
    (["--eval-split", "1.5"], ("--eval-split", "[0, 1)")),
    (["--eval-split", "1"], ("--eval-split", "[0, 1)")),
    (["--eval-split", "-0.1"], ("--eval-split", "[0, 1)")),
    (["--max-time", "5 minutes"], ("--max-time", "'5 minutes'", "20m")),
    (["--max-time", "0s"], ("--max-time", "more than 0")),
    (["--template", "alpacca"], ("Unknown template 'alpacca'", "alpaca, chatml, raw, model")),
    (["--template", "{tmp}/mine.yaml"], ("--template", "mine.yaml", "file not found")),
    (["--template", "{tmp}/mine.jinja"], ("--template", "mine.jinja", "file not found")),
    (["--lora", "--lora-r", "0"], ("--lora-r", ">= 1")),
    (["--lora", "--lora-dropout", "1.5"], ("--lora-dropout", "[0, 1)")),
    (["--columns", "instruction"], ("--columns", "'instruction'", "FIELD=COLUMN")),
    (["--columns", "question=instruction"], ("--columns", "question", "instruction, input, output")),
    (["--lr", "-1e-4"], ("--lr", "> 0")),
    (["--warmup-ratio", "2"], ("--warmup-ratio", "[0, 1)")),
    (["--weight-decay", "-0.1"], ("--weight-decay", ">= 0")),
    (["--max-grad-norm", "-1"], ("--max-grad-norm", ">= 0")),
    (["--keep-checkpoints", "0"], ("--keep-checkpoints", ">= 1")),
]


@pytest.fixture
def no_loading(monkeypatch):
    """Fail the test if training starts loading data or a model: flags must be checked first."""
    import instruct_tune.train.setup as setup

    def loaded(*a, **k):
        raise AssertionError("data/model loading started before the flags were checked")

    monkeypatch.setattr(setup, "load_data", loaded)
    monkeypatch.setattr(setup, "load_model_for_training", loaded)


@pytest.mark.parametrize("flags, words", TRAIN_FLAGS, ids=[" ".join(f) for f, _ in TRAIN_FLAGS])
def test_train_flags(flags, words, model_dirs, data_file, tmp_path, capsys, no_loading):
    flags = [f.replace("{data}", str(data_file)).replace("{tmp}", str(tmp_path)) for f in flags]
    code, _, err = run_cli(capsys, "train", "--model", model_dirs["llama"], "--data", data_file,
                           "--out", tmp_path / "run", *flags)
    assert_refused(code, err, *words)
    assert not (tmp_path / "run").exists()


CHOICE_FLAGS = [("train", "--truncation", "bogus", "drop"), ("train", "--precision", "fp16", "bf16"),
                ("train", "--schedule", "linear", "cosine"), ("inspect", "--truncation", "cut", "left"),
                ("train", "--format", "sharegpt", "alpaca"), ("train", "--batch-size", "eight", "INT")]


@pytest.mark.parametrize("cmd, flag, value, hint", CHOICE_FLAGS,
                         ids=[f"{c} {f} {v}" for c, f, v, _ in CHOICE_FLAGS])
def test_values_of_the_wrong_kind(cmd, flag, value, hint, capsys):
    """tyro rejects these while parsing: exit 2, naming the flag, the value and what is allowed."""
    required = {"train": ["--model", "m", "--data", "d", "--out", "o"], "inspect": ["d", "--model", "m"]}
    code, _, err = run_cli(capsys, cmd, *required[cmd], flag, value)
    assert code == 2
    assert flag in err and value in err and hint in err and f"instruct-tune {cmd} --help" in err


def test_misspelt_flag_suggests_the_right_one(capsys):
    code, _, err = run_cli(capsys, "train", "--model", "m", "--data", "d", "--out", "o",
                           "--batch-sise", "4")
    assert code == 2 and "--batch-sise" in err and "Perhaps you meant" in err and "--batch-size" in err


def test_misspelt_required_flag_is_named_with_the_missing_one(capsys):
    code, _, err = run_cli(capsys, "train", "--modle", "x", "--data", "d", "--out", "o")
    assert code == 2 and "--modle" in err and "--model" in err and "Required" in err


SAMPLING = [(["--max-new-tokens", "0"], "--max-new-tokens must be at least 1"),
            (["--max-new-tokens", "-5"], "--max-new-tokens must be at least 1"),
            (["--temperature", "-1"], "--temperature must be >= 0"),
            (["--top-p", "0"], "--top-p must be in (0, 1]"),
            (["--top-p", "1.5"], "--top-p must be in (0, 1]")]


@pytest.mark.parametrize("cmd", ["generate", "chat", "eval"])
@pytest.mark.parametrize("flags, message", SAMPLING, ids=[" ".join(f) for f, _ in SAMPLING])
def test_sampling_flags(cmd, flags, message, model_dirs, data_file, tmp_path, capsys, monkeypatch):
    """Checked before the model loads (loading is made to fail, so a late check cannot pass)."""
    from instruct_tune.evaluate.generate import Generator

    monkeypatch.setattr(Generator, "load", classmethod(lambda *a, **k: pytest.fail("loaded")))
    code, _, err = run_cli(capsys, *command(cmd, str(model_dirs["llama"]), data_file, tmp_path),
                           *flags)
    assert_refused(code, err, message)


OTHER_FLAGS = [
    (["eval", "--model", "{model}", "--data", "{data}", "--batch-size", "0"], ("--batch-size",)),
    (["eval", "--model", "{model}", "--data", "{data}", "--compare", "{tmp}/no-base"],
     ("no-base", "no such directory")),
    (["inspect", "{data}", "--model", "{model}", "--max-length", "0"], ("--max-length", ">= 2")),
    (["inspect", "{data}", "--model", "{model}", "--template", "alpacca"], ("Unknown template",)),
    (["inspect", "{data}", "--model", "{model}", "--columns", "instruction"], ("--columns",)),
    (["audit", "{data}", "--model", "{model}", "--max-length", "1"], ("--max-length", ">= 2")),
    (["audit", "{data}", "--model", "{model}", "--template", "alpacca"], ("Unknown template",)),
    (["generate", "Hi", "--model", "{model}", "--template", "alpacca"], ("Unknown template",)),
    (["export", "{model}", "--to", "{model}"], ("--to", "overlaps the model directory")),
]


@pytest.mark.parametrize("argv, words", OTHER_FLAGS, ids=[" ".join(a[:1] + a[-2:]) for a, _ in OTHER_FLAGS])
def test_other_commands_flags(argv, words, model_dirs, data_file, tmp_path, capsys):
    argv = [a.replace("{model}", str(model_dirs["llama"])).replace("{data}", str(data_file))
            .replace("{tmp}", str(tmp_path)) for a in argv]
    t0 = time.perf_counter()
    code, _, err = run_cli(capsys, *argv)
    assert_refused(code, err, *words)
    assert time.perf_counter() - t0 < 30  # refused up front, not after generating


YAML_CASES = [("batch_size: eight\n", ("[batch_size]", "'eight'", "expected int")),
              ("precision: fp16\n", ("[precision]", "one of fp32, bf16")),
              ("lora_targets: [q_proj, v_proj]\n", ("[lora_targets]", "expected str")),
              ("learning_rate: 0.1\n", ("unknown option", "learning_rate", "calls this lr")),
              ("max_lenght: 12\n", ("unknown option", "max_lenght", "did you mean max_length?")),
              ("- model\n- data\n", ("expected a mapping",)),
              ("model: [unclosed\n", ("not valid YAML",))]


@pytest.mark.parametrize("text, words", YAML_CASES, ids=[t.split(":")[0] for t, _ in YAML_CASES])
def test_bad_yaml_config(text, words, tmp_path, capsys):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    code, _, err = run_cli(capsys, "train", "--config", path)
    assert_refused(code, err, str(path), *words)


def test_yaml_numbers_are_read_as_numbers(tmp_path):
    """YAML reads `1e-4` as a string; it must still be a learning rate, not a crash later."""
    path = tmp_path / "run.yaml"
    path.write_text("model: m\ndata: d\nout: o\nlr: 1e-4\nmax_time: 300\n"
                    "columns: {instruction: q, output: a}\n")
    cfg = cli.parse("train", ["--config", str(path)])
    assert (cfg.lr, cfg.max_time, cfg.columns) == (1e-4, "300", "instruction=q,output=a")


@pytest.mark.parametrize("what", ["directory", "missing file"])
def test_config_path_that_is_not_a_file(what, tmp_path, capsys):
    path = tmp_path if what == "directory" else tmp_path / "nope.yaml"
    code, _, err = run_cli(capsys, "train", "--config", path)
    assert_refused(code, err, str(path))


def test_bf16_on_cpu_is_accepted(model_dirs, data_file, tmp_path, capsys):
    """Decision: --precision bf16 without a GPU is allowed (torch autocasts bf16 on CPU); it is
    refused only on a GPU without bf16 support."""
    code, _, err = run_cli(capsys, "train", "--model", model_dirs["llama"], "--data", data_file,
                           "--out", tmp_path / "run", "--precision", "bf16", "--max-steps", "1",
                           "--batch-size", "2", "--cache-dir", "none", "--quiet")
    assert code == 0, err
    assert (tmp_path / "run" / "final" / "model.safetensors").is_file()


# ---------------------------------------------------------------------------------------------
# Usage: no arguments, --help, missing required options


def test_no_arguments_prints_usage(capsys):
    code, out, _ = run_cli(capsys)
    assert code == 2 and "usage: instruct-tune <command>" in out
    for name in cli.COMMANDS:
        assert name in out


@pytest.mark.parametrize("name", list(cli.COMMANDS))
def test_help_of_each_command(name, capsys):
    code, out, _ = run_cli(capsys, name, "--help")
    assert code == 0 and f"instruct-tune {name}" in out and "--help" in out


def assert_required(code: int, err: str, missing: list[str], given: list[str]) -> None:
    """tyro refuses before anything loads: exit 2, naming exactly the missing options."""
    assert code == 2 and "Required options" in err, err
    listed = err.split("Required options", 1)[1].split("For full helptext", 1)[0]
    for name in missing:
        assert name in listed, f"{name!r} not in: {err}"
    for name in given:
        assert f"{name} STR" not in listed, f"{name!r} was given but is listed: {err}"


TRAIN_FLAGS_GIVEN = [([], ["--model", "--data", "--out"]),
                     (["--model", "m"], ["--data", "--out"]),
                     (["--model", "m", "--data", "d"], ["--out"]),
                     (["--data", "d", "--out", "o"], ["--model"])]


@pytest.mark.parametrize("given, missing", TRAIN_FLAGS_GIVEN)
def test_train_without_required_options(given, missing, capsys):
    code, _, err = run_cli(capsys, "train", *given)
    assert_required(code, err, missing, [g for g in given if g.startswith("--")])


def test_required_options_can_come_from_the_yaml(tmp_path, capsys):
    path = tmp_path / "run.yaml"
    path.write_text("model: m\ndata: d\n")
    code, _, err = run_cli(capsys, "train", "--config", path)
    assert_required(code, err, ["--out"], ["--model", "--data"])


REQUIRED = [
    (["inspect"], ["--data", "--model"]), (["inspect", "d.jsonl"], ["--model"]),
    (["eval"], ["--model", "--data"]), (["eval", "--model", "m"], ["--data"]),
    (["generate", "Hi"], ["--model"]), (["generate", "--model", "m"], ["--instruction"]),
    (["chat"], ["--model"]), (["export"], ["--model", "--to"]), (["export", "m"], ["--to"]),
    (["audit"], ["--data"])]


@pytest.mark.parametrize("argv, missing", REQUIRED, ids=[" ".join(a) for a, _ in REQUIRED])
def test_other_commands_without_required_arguments(argv, missing, capsys):
    code, _, err = run_cli(capsys, *argv)
    assert_required(code, err, missing, [a for a in argv[1:] if a.startswith("--")])


# ---------------------------------------------------------------------------------------------
# The installed console script: what a user's shell sees


def test_console_script_bad_input_prints_no_traceback(tmp_path, data_file):
    """Real processes: a missing model and a bad flag each exit 2 with one message on stderr.
    stdin is an open pipe nobody writes to: a prompt (e.g. transformers' remote-code question)
    would hang here, and the timeout would fail the test."""
    exe = shutil.which("instruct-tune") or pytest.skip("instruct-tune console script not installed")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    runs = [[exe, "train", "--model", str(tmp_path / "no-model"), "--data", str(data_file),
             "--out", str(tmp_path / "run")],
            [exe, "train", "--truncation", "bogus"]]
    for argv in runs:
        p = subprocess.run(argv, stdin=subprocess.PIPE, capture_output=True, text=True, env=env,
                           timeout=180)
        assert p.returncode == 2, p.stderr
        assert "Traceback" not in p.stderr + p.stdout and p.stderr.strip(), p.stderr
