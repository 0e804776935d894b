"""Loading a file never runs code (issue 9, "Loading safety"), proven end to end through the CLI.

- Pickle weights (.bin) are refused without --allow-pickle, with why; with it they load.
- A malicious pickle (its __reduce__ creates a marker file) never runs: not when refused, not with
  --allow-pickle (read with torch.load(weights_only=True)), not inside a LoRA adapter, not inside
  a checkpoint's optimizer/scheduler/RNG state on --resume.
- A model that needs its own Python code (config.json auto_map) is refused unless
  --trust-remote-code, and the code does not run; with the flag it does.
- Every torch.load in a real resume passes weights_only=True, and the source has no unsafe loader.
Each refusal is exit 2 with a message naming the file and what to do, never a traceback.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.test_hostile_cli import assert_refused, run_cli

SRC = Path(__file__).resolve().parents[1] / "src" / "instruct_tune"
MODEL_COMMANDS = ("generate", "chat", "eval", "export", "train")


class Payload:
    """Unpickling this creates `marker`: stands in for any code a hostile pickle could run."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def hostile_pickle(path: Path, marker: Path) -> Path:
    """A torch.save file (the format of pytorch_model.bin and accelerate's state files) whose
    unpickling runs code."""
    torch.save({"model.embed_tokens.weight": torch.zeros(2), "state": Payload(marker)}, path)
    return path



@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "train.jsonl"
    rows = [{"instruction": f"Say {w}.", "output": w} for w in ("yes", "no", "cat", "dog")]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def pickle_dir(model_dirs, tmp_path_factory) -> Path:
    """The tiny llama with its weights as pytorch_model.bin (a real torch.save'd state dict)."""
    d = tmp_path_factory.mktemp("pickle") / "model"
    shutil.copytree(model_dirs["llama"], d)
    torch.save(load_file(str(d / "model.safetensors")), d / "pytorch_model.bin")
    (d / "model.safetensors").unlink()
    return d


def command(name: str, model: Path | str, data: Path, tmp: Path) -> list:
    return {
        "generate": ["generate", "Say yes.", "--model", model, "--max-new-tokens", "3"],
        "chat": ["chat", model],
        "eval": ["eval", "--model", model, "--data", data, "--max-new-tokens", "2"],
        "export": ["export", model, "--to", tmp / "exported"],
        "train": ["train", "--model", model, "--data", data, "--out", tmp / "run", "--max-steps",
                  "1", "--batch-size", "2", "--cache-dir", "none", "--quiet"],
        "inspect": ["inspect", data, "--model", model, "--cache-dir", "none"],
        "audit": ["audit", data, "--model", model],
    }[name]


# ---------------------------------------------------------------------------------------------
# Pickle weights


def test_the_hostile_pickle_is_live(tmp_path):
    """Control: loaded without the guard, the payload runs. So 'no marker' below means refused."""
    marker = tmp_path / "ran"
    path = hostile_pickle(tmp_path / "x.bin", marker)
    torch.load(path, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("cmd", MODEL_COMMANDS)
def test_pickle_weights_are_refused_without_allow_pickle(cmd, pickle_dir, data_file, tmp_path,
                                                         capsys):
    code, _, err = run_cli(capsys, *command(cmd, pickle_dir, data_file, tmp_path))
    assert_refused(code, err, str(pickle_dir), "pytorch_model.bin", "pickle", "arbitrary code",
                   "safetensors", "--allow-pickle")
    assert not (tmp_path / "run").exists() and not (tmp_path / "exported").exists()


def test_allow_pickle_loads_them(pickle_dir, model_dirs, tmp_path, capsys):
    """--allow-pickle loads a .bin model; export then converts it to safetensors, which loads
    without the flag and holds exactly the original weights."""
    code, out, err = run_cli(capsys, "generate", "Say yes.", "--model", pickle_dir,
                             "--max-new-tokens", "3", "--allow-pickle")
    assert code == 0 and out.strip(), err
    code, _, err = run_cli(capsys, "export", pickle_dir, "--to", tmp_path / "safe", "--allow-pickle")
    assert code == 0, err
    assert not list((tmp_path / "safe").glob("*.bin"))
    exported, original = load_file(str(tmp_path / "safe" / "model.safetensors")), load_file(
        str(model_dirs["llama"] / "model.safetensors"))
    assert exported.keys() == original.keys()
    assert all(torch.equal(exported[k], original[k]) for k in original)
    code, out, err = run_cli(capsys, "generate", "Say yes.", "--model", tmp_path / "safe",
                             "--max-new-tokens", "3")
    assert code == 0 and out.strip(), err


@pytest.fixture
def hostile_model(pickle_dir, tmp_path) -> tuple[Path, Path]:
    """(model dir whose pytorch_model.bin runs code when unpickled, the marker it would create)."""
    d, marker = tmp_path / "hostile", tmp_path / "code-ran"
    shutil.copytree(pickle_dir, d)
    hostile_pickle(d / "pytorch_model.bin", marker)
    return d, marker


@pytest.mark.parametrize("cmd", MODEL_COMMANDS)
def test_hostile_pickle_never_runs(cmd, hostile_model, data_file, tmp_path, capsys):
    model, marker = hostile_model
    code, _, err = run_cli(capsys, *command(cmd, model, data_file, tmp_path))
    assert_refused(code, err, "pytorch_model.bin", "--allow-pickle")
    assert not marker.exists()


@pytest.mark.parametrize("cmd", ["generate", "train"])
def test_hostile_pickle_never_runs_even_with_allow_pickle(cmd, hostile_model, data_file, tmp_path,
                                                          capsys):
    model, marker = hostile_model
    code, _, err = run_cli(capsys, *command(cmd, model, data_file, tmp_path), "--allow-pickle")
    assert_refused(code, err, str(model), "objects other than tensors", "weights_only=True",
                   "safetensors")
    assert not marker.exists()


@pytest.fixture
def hostile_adapter(model_dirs, tmp_path) -> tuple[Path, Path]:
    """A LoRA adapter dir (with tokenizer) whose adapter_model.bin runs code when unpickled."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    d, marker = tmp_path / "adapter", tmp_path / "code-ran"
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dirs["llama"]),
                           LoraConfig(r=2, target_modules="all-linear", task_type="CAUSAL_LM"))
    model.peft_config["default"].base_model_name_or_path = str(model_dirs["llama"])
    model.save_pretrained(d)
    for f in model_dirs["llama"].glob("tokenizer*"):
        shutil.copy(f, d)
    (d / "adapter_model.safetensors").unlink()
    hostile_pickle(d / "adapter_model.bin", marker)
    return d, marker


@pytest.mark.parametrize("flag", [[], ["--allow-pickle"]], ids=["default", "allow-pickle"])
def test_hostile_adapter_pickle_never_runs(flag, hostile_adapter, capsys):
    adapter, marker = hostile_adapter
    code, _, err = run_cli(capsys, "generate", "Say yes.", "--model", adapter, *flag)
    words = ("objects other than tensors",) if flag else ("adapter_model.bin", "--allow-pickle")
    assert_refused(code, err, str(adapter), *words)
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------
# Remote code (config.json / tokenizer_config.json auto_map)

MODELING = """from pathlib import Path
Path({marker!r}).write_text("the model's own code ran")
from transformers import LlamaConfig, LlamaForCausalLM

class EvilConfig(LlamaConfig):
    model_type = "evil-llama"

class EvilModel(LlamaForCausalLM):
    config_class = EvilConfig
"""
TOKENIZATION = """from pathlib import Path
Path({marker!r}).write_text("the tokenizer's own code ran")
from transformers import PreTrainedTokenizerFast

class EvilTokenizer(PreTrainedTokenizerFast):
    pass
"""


def remote_code_dir(good: Path, tmp: Path, *, model_type: str = "evil-llama",
                    tokenizer: bool = False) -> tuple[Path, Path]:
    """A copy of `good` whose config (or tokenizer config) names its own Python file."""
    d, marker = tmp / "remote", tmp / "code-ran"
    shutil.copytree(good, d)
    if tokenizer:
        cfg = json.loads((d / "tokenizer_config.json").read_text())
        cfg.update(tokenizer_class="EvilTokenizer",
                   auto_map={"AutoTokenizer": [None, "tokenization_evil.EvilTokenizer"]})
        (d / "tokenizer_config.json").write_text(json.dumps(cfg))
        (d / "tokenization_evil.py").write_text(TOKENIZATION.format(marker=str(marker)))
    else:
        cfg = json.loads((d / "config.json").read_text())
        cfg.update(model_type=model_type, auto_map={"AutoConfig": "modeling_evil.EvilConfig",
                                                    "AutoModelForCausalLM": "modeling_evil.EvilModel"})
        (d / "config.json").write_text(json.dumps(cfg))
        (d / "modeling_evil.py").write_text(MODELING.format(marker=str(marker)))
    return d, marker


@pytest.mark.parametrize("cmd", MODEL_COMMANDS)
def test_remote_code_model_is_refused_by_default(cmd, model_dirs, data_file, tmp_path, capsys):
    model, marker = remote_code_dir(model_dirs["llama"], tmp_path)
    code, _, err = run_cli(capsys, *command(cmd, model, data_file, tmp_path))
    assert_refused(code, err, str(model / "config.json"), "modeling_evil.py", "auto_map",
                   "--trust-remote-code")
    assert not marker.exists()


@pytest.mark.parametrize("cmd", ["inspect", "audit", "generate", "train"])
def test_remote_code_tokenizer_is_refused_by_default(cmd, model_dirs, data_file, tmp_path, capsys):
    model, marker = remote_code_dir(model_dirs["llama"], tmp_path, tokenizer=True)
    code, _, err = run_cli(capsys, *command(cmd, model, data_file, tmp_path))
    assert_refused(code, err, str(model / "tokenizer_config.json"), "tokenization_evil.py",
                   "--trust-remote-code")
    assert not marker.exists()


def test_known_architecture_with_auto_map_loads_with_builtin_code(model_dirs, tmp_path, capsys):
    """As transformers does: a model type it knows is built from its own code, never the dir's
    (many hub models ship an auto_map for old transformers versions). Nothing of the dir runs."""
    model, marker = remote_code_dir(model_dirs["llama"], tmp_path, model_type="llama")
    code, out, err = run_cli(capsys, "generate", "Say yes.", "--model", model, "--max-new-tokens", "3")
    assert code == 0 and out.strip(), err
    assert not marker.exists()


def test_trust_remote_code_runs_it(model_dirs, tmp_path, capsys, monkeypatch):
    """The flag reaches transformers: the directory's code runs and the model loads."""
    import transformers.dynamic_module_utils as dynamic

    monkeypatch.setattr(dynamic, "HF_MODULES_CACHE", str(tmp_path / "modules"))  # not ~/.cache
    monkeypatch.setattr(sys, "path", list(sys.path))
    model, marker = remote_code_dir(model_dirs["llama"], tmp_path)
    try:
        code, out, err = run_cli(capsys, "generate", "Say yes.", "--model", model,
                                 "--max-new-tokens", "3", "--trust-remote-code")
    finally:
        for name in [m for m in sys.modules if m.startswith("transformers_modules")]:
            monkeypatch.delitem(sys.modules, name)
    assert code == 0 and out.strip(), err
    assert marker.exists()


@pytest.mark.parametrize("kind", ["pickle", "remote-code"])
def test_cached_hub_model_is_checked_like_a_local_one(kind, hostile_model, model_dirs, tmp_path,
                                                      monkeypatch, capsys):
    """A hub name found in the Hugging Face cache loads from its snapshot directory, through the
    same checks: pickle weights and a model's own code are refused, and neither runs."""
    from tests.test_models import cache_model

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    if kind == "pickle":
        model, marker = hostile_model
        words = ("pytorch_model.bin", "pickle", "--allow-pickle")
    else:
        model, marker = remote_code_dir(model_dirs["llama"], tmp_path)
        words = ("modeling_evil.py", "auto_map", "--trust-remote-code")
    cache_model(tmp_path / "hf-cache", "org/Evil-0.5B", model)
    code, _, err = run_cli(capsys, "generate", "Say yes.", "--model", "org/Evil-0.5B")
    assert_refused(code, err, "models--org--Evil-0.5B", *words)
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------
# Checkpoints: what --resume reads with torch.load


@pytest.fixture(scope="module")
def finished_run(model_dirs, data_file, tmp_path_factory) -> tuple[Path, list]:
    """(a 2-step run with checkpoints step-1 and step-2, the train flags that made it)."""
    from instruct_tune import cli

    out = tmp_path_factory.mktemp("ckpt") / "run"
    flags = ["train", "--model", model_dirs["llama"], "--data", data_file, "--batch-size", "2",
             "--save-every", "1", "--cache-dir", "none", "--quiet"]
    assert cli.main([str(f) for f in [*flags, "--out", out, "--max-steps", "2"]]) == 0
    assert (out / "checkpoints" / "step-2" / "optimizer.bin").is_file()
    return out, flags


def resume(capsys, run_dir: Path, flags: list) -> tuple[int, str, str]:
    return run_cli(capsys, *flags, "--out", run_dir, "--max-steps", "3", "--resume")


@pytest.mark.parametrize("name", ["optimizer.bin", "scheduler.bin", "random_states_0.pkl"])
def test_hostile_checkpoint_state_is_refused_on_resume(name, finished_run, tmp_path, capsys):
    src, flags = finished_run
    run_dir, marker = tmp_path / "run", tmp_path / "code-ran"
    shutil.copytree(src, run_dir)
    ckpt = run_dir / "checkpoints" / "step-2"
    hostile_pickle(ckpt / name, marker)
    before = (run_dir / "metrics.jsonl").read_text()
    code, _, err = resume(capsys, run_dir, flags)
    assert_refused(code, err, str(ckpt), "objects other than tensors", "weights_only=True",
                   "earlier one", "--overwrite")
    assert not marker.exists()
    assert (run_dir / "metrics.jsonl").read_text() == before  # the run was not touched


def test_damaged_checkpoint_state_is_refused_on_resume(finished_run, tmp_path, capsys):
    src, flags = finished_run
    run_dir = tmp_path / "run"
    shutil.copytree(src, run_dir)
    ckpt = run_dir / "checkpoints" / "step-2"
    (ckpt / "optimizer.bin").write_bytes((ckpt / "optimizer.bin").read_bytes()[:100])
    code, _, err = resume(capsys, run_dir, flags)
    assert_refused(code, err, str(ckpt), "could not be read", "damaged", "--overwrite")


def test_resume_reads_every_state_file_with_weights_only(finished_run, tmp_path, capsys,
                                                         monkeypatch):
    src, flags = finished_run
    run_dir = tmp_path / "run"
    shutil.copytree(src, run_dir)
    calls: list[dict] = []
    real = torch.load

    def recording(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", recording)
    code, _, err = resume(capsys, run_dir, flags)
    assert code == 0, err
    assert len(calls) >= 3  # optimizer, scheduler, RNG state
    assert all(c.get("weights_only") is True for c in calls), calls


def test_source_has_no_unsafe_loader():
    """Static guard for new code: torch.load always with weights_only=True; no pickle.load,
    yaml.load (use safe_load), numpy allow_pickle=True, or hard-wired trust_remote_code=True."""
    bad = []
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        for m in re.finditer(r"torch\.load\(", text):
            depth, end = 0, m.end() - 1
            for end in range(m.end() - 1, len(text)):  # to the matching ")"
                depth += {"(": 1, ")": -1}.get(text[end], 0)
                if depth == 0:
                    break
            call = text[m.start():end + 1]
            if "weights_only=True" not in call:
                bad.append(f"{path.name}: {call}")
        for pattern in (r"\bpickle\.loads?\(", r"\byaml\.(unsafe_)?load\(", r"allow_pickle=True",
                        r"trust_remote_code=True", r"weights_only=False", r"\bdill\b", r"\bjoblib\b"):
            bad += [f"{path.name}: {m.group(0)}" for m in re.finditer(pattern, text)]
    assert not bad, bad


# ---------------------------------------------------------------------------------------------
# The console script


def test_console_script_refuses_hostile_files_without_running_them(hostile_model, model_dirs,
                                                                   tmp_path):
    """Real processes with stdin left open: a hostile pickle and a remote-code model each exit 2
    with a message, no traceback, no prompt (transformers asks on stdin when trust_remote_code
    is None: that would hang until the timeout), and neither payload runs."""
    exe = shutil.which("instruct-tune") or pytest.skip("instruct-tune console script not installed")
    remote, remote_marker = remote_code_dir(model_dirs["llama"], tmp_path / "r")
    pickled, pickle_marker = hostile_model
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for model in (pickled, remote):
        p = subprocess.run([exe, "generate", "Say yes.", "--model", str(model)], env=env,
                           stdin=subprocess.PIPE, capture_output=True, text=True, timeout=180)
        assert p.returncode == 2, p.stderr
        assert "error:" in p.stderr and "Traceback" not in p.stderr + p.stdout, p.stderr
    assert not pickle_marker.exists() and not remote_marker.exists()
