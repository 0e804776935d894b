"""What a model directory must not make us do: run its own code, or unpickle its weights.

transformers would refuse remote code too, and loads pickles with torch's weights_only guard;
these checks come first so the error names the files and says what to do.
"""

from __future__ import annotations

from pathlib import Path

from .errors import ModelLoadError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
# Pickles in HF Trainer checkpoint dirs that are not weights (never loaded by us).
NOT_WEIGHTS = ("training_args", "optimizer", "scheduler", "scaler", "rng_state", "random_states")
PICKLE_RISK = ("Loading a pickle can run arbitrary code (torch's weights_only guard narrows this "
               "but has been bypassed before, e.g. CVE-2025-32434).")


def remote_code_error(where: Path, files: list[str]) -> ModelLoadError:
    shipped = f" ({', '.join(files)})" if files else ""
    return ModelLoadError(
        f"{where} needs the Python code shipped with the model{shipped} to load (auto_map). "
        "instruct-tune never runs a model's own code by default. Read that code, and pass "
        "--trust-remote-code only if you trust it.")


def auto_map_files(auto_map: dict) -> list[str]:
    refs = [r for v in auto_map.values() for r in (v if isinstance(v, list) else [v]) if r]
    return sorted({str(r).split("--")[-1].rsplit(".", 1)[0] + ".py" for r in refs})


def check_remote_code(path: Path, config: dict, trust_remote_code: bool) -> None:
    """Refuse a model that only loads by running its own code. transformers would raise too, but
    this names the files. A model whose type transformers knows loads with the built-in code, as
    transformers does itself: nothing of the directory's runs."""
    from transformers import CONFIG_MAPPING

    auto_map = config.get("auto_map")
    known = config.get("model_type") in CONFIG_MAPPING
    if trust_remote_code or not isinstance(auto_map, dict) or known:
        return
    raise remote_code_error(path / "config.json", auto_map_files(auto_map))


def check_weights(path: Path, allow_pickle: bool) -> None:
    files = [p.name for p in path.iterdir()]
    if any(f.endswith(".safetensors") for f in files):
        return  # safetensors win: use_safetensors=True (or transformers' own preference)
    pickled = sorted(f for f in files
                     if f.endswith(PICKLE_SUFFIXES) and not f.startswith(NOT_WEIGHTS))
    if pickled and not allow_pickle:
        raise ModelLoadError(
            f"{path} has only pickle-based weights ({', '.join(pickled[:3])}). {PICKLE_RISK} "
            "If you trust the source, pass --allow-pickle, or convert them to safetensors once: "
            f"instruct-tune export {path} --to NEW_DIR --allow-pickle.")
    if not pickled:
        raise ModelLoadError(
            f"{path} has no weights (no *.safetensors file next to config.json). Was saving "
            f"interrupted, or only the config copied? Save the model with "
            f"model.save_pretrained('{path}').")
