"""Checkpoints that survive crashes: written atomically, only the newest K kept, resumed exactly.

A checkpoint DIR/checkpoints/step-N/ holds what `accelerate` saves (model or adapter weights as
safetensors, optimizer, scheduler, per-process RNG states; FSDP/DeepSpeed shards when configured)
plus `trainer_state.json` (step, data position, counters; `extra` holds the data's identity and,
under PLANNED_STEPS, the step count the lr schedule was planned for, so a resume with another
budget can say that the schedule changed). It is first written to
`checkpoints/.tmp-step-N`, fsynced, then renamed: a directory named `step-N` is always complete, so
a run killed mid-write resumes from the previous one. Before the rename, `model_files` (see
final.checkpoint_files) adds what makes it a model directory as well (config/adapter, tokenizer,
template), so any checkpoint can be generated with, evaluated or exported like final/; resume
reads only accelerate's files and ignores those. Everything read back with torch.load uses
weights_only=True (accelerate's default), so a checkpoint cannot run code.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
import shutil
import signal
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from ..errors import ConfigError

STATE_FILE = "trainer_state.json"
PLANNED_STEPS = "planned_steps"  # key in the state's "extra"; absent in older checkpoints
_NAME = re.compile(r"^step-(\d+)$")

# Test hook: INSTRUCT_TUNE_TEST_SIGNAL="KILL@checkpoint:6" sends SIGKILL to this process in the
# middle of writing checkpoint 6 ("INT@step:3" sends SIGINT after optimizer step 3; "KILL@final"
# while writing final/). Used by the crash tests to hit exact points; inert otherwise.
_TEST_SIGNAL = os.environ.get("INSTRUCT_TUNE_TEST_SIGNAL", "")


def test_signal(point: str) -> None:
    """Deliver the test signal if INSTRUCT_TUNE_TEST_SIGNAL names this point."""
    if _TEST_SIGNAL and _TEST_SIGNAL.split("@", 1)[1] == point:
        os.kill(os.getpid(), getattr(signal, "SIG" + _TEST_SIGNAL.split("@", 1)[0]))


def checkpoints_dir(out: Path) -> Path:
    return out / "checkpoints"


def list_checkpoints(out: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints as (step, path), oldest first. Temporary (half-written) dirs are ignored."""
    root = checkpoints_dir(out)
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = _NAME.match(p.name)
        if m and (p / STATE_FILE).is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(out: Path) -> Path | None:
    found = list_checkpoints(out)
    return found[-1][1] if found else None


def _fsync_tree(path: Path) -> None:
    for p in [*path.rglob("*"), path]:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def only_trainable(names: set[str]):
    """An accelerate save-state hook that keeps only trainable weights (LoRA: the adapter, not the
    frozen base model, which would make every checkpoint as big as the model). accelerate hands
    it the state dict of the model it keeps, the unwrapped one (no DDP "module." prefix), so
    `names` must come from the unwrapped model too."""
    def hook(models, weights, output_dir):
        for i, w in enumerate(weights):
            weights[i] = OrderedDict((k, v) for k, v in w.items() if k in names)
    return hook


def save_checkpoint(accelerator, out: Path, step: int, state: dict, keep: int,
                    model_files: Callable[[Path], None] | None = None) -> Path:
    """Write checkpoint `step` atomically on all processes, then delete all but the newest `keep`.
    `model_files(dir)` (main process) adds the files that make it a model directory."""
    root = checkpoints_dir(out)
    tmp, final = root / f".tmp-step-{step}", root / f"step-{step}"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob(".tmp-step-*"):  # left by a run killed mid-write
            shutil.rmtree(stale, ignore_errors=True)
    accelerator.wait_for_everyone()
    # accelerate warns on every save that tied weights (lm_head = embeddings) are stored once.
    quiet = logging.getLogger("accelerate.utils.other")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        accelerator.save_state(str(tmp))
    finally:
        quiet.setLevel(level)
    test_signal(f"checkpoint:{step}")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / STATE_FILE).write_text(json.dumps({**state, "step": step}, indent=1))
        if model_files is not None:
            model_files(tmp)
        _fsync_tree(tmp)
        if final.exists():  # re-saving a step after a resume: replace the old copy
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(root)
        for _, old in list_checkpoints(out)[:-max(keep, 1)]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_checkpoint(accelerator, path: Path, *, trainable: set[str] | None = None) -> dict:
    """Restore model/optimizer/scheduler/RNG from `path` into the prepared objects; return the
    trainer state (step, data position, counters). `trainable`: the weight names a LoRA
    checkpoint must hold (it holds only those; the frozen base comes from --model)."""
    try:
        state = json.loads((path / STATE_FILE).read_text())
        if not isinstance(state, dict) or not isinstance(state.get("step"), int):
            raise ValueError("no step counter")
    except (OSError, ValueError) as e:  # JSONDecodeError is a ValueError
        raise ConfigError(
            f"{path / STATE_FILE} is damaged ({e}); the checkpoint cannot be resumed. Delete "
            f"{path} to resume from the previous checkpoint.") from None
    rng = path / f"random_states_{accelerator.process_index}.pkl"
    if state.get("world_size", 1) != accelerator.num_processes or not rng.is_file():
        raise ConfigError(
            f"{path} was written by {state.get('world_size', 1)} process(es), this run has "
            f"{accelerator.num_processes}. Resume with the same number of processes.")
    weights = path / "model.safetensors"
    saved: set[str] = set()
    if weights.is_file():
        from safetensors import safe_open

        with safe_open(str(weights), "pt") as f:
            saved = set(f.keys())
    # An existing but empty weights file is checked too: it resumed silently from the initial
    # adapter (multi-process LoRA checkpoints written while only_trainable got DDP's names).
    if trainable is not None and weights.is_file():
        if not saved:
            raise ConfigError(f"{path / 'model.safetensors'} holds no trainable weights (written "
                              "by an older instruct-tune under several processes), so it cannot "
                              "be resumed exactly. Start over with --overwrite; the adapter in "
                              f"{path} can still be used as a model directory.")
        missing = trainable - saved
        if missing:
            raise ConfigError(f"{path} lacks {len(missing)} trainable weights (e.g. "
                              f"{sorted(missing)[0]}): was it written with other LoRA settings?")
    from accelerate.utils import load as torch_load_safe  # torch.load(weights_only=True) + numpy
    from safetensors import SafetensorError

    try:
        # accelerate skips an unreadable RNG file with an info log, which would silently break
        # exact resume: read it here first so a damaged or tampered one is an error.
        states = torch_load_safe(rng)
        if not isinstance(states, dict) or not {"random_state", "torch_manual_seed"} <= states.keys():
            raise ValueError(f"{rng.name} lacks the RNG states")
        accelerator.load_state(str(path), strict=trainable is None)
    except pickle.UnpicklingError:
        raise ConfigError(
            f"{path}: a checkpoint file holds objects other than tensors and plain values, so it "
            "was refused (checkpoints are read with torch.load(weights_only=True); instruct-tune "
            "never writes such files, so it was changed by something else). Delete this "
            "checkpoint to resume from an earlier one, or start over with --overwrite.") from None
    except (RuntimeError, EOFError, OSError, ValueError, SafetensorError) as e:  # damaged files
        raise ConfigError(f"{path} could not be read ({type(e).__name__}: "
                          f"{(str(e).strip().splitlines() or [''])[0][:200]}). If it is damaged, "
                          "delete it to resume from an earlier checkpoint, or start over with "
                          "--overwrite.") from None
    return state


# ---------------------------------------------------------------------------------------------
# Resume: which checkpoint, whether the run is still the same, and where it left off


def check_resume(out: Path, cfg, resumable: set[str]) -> Path:
    """The checkpoint --resume continues from; the options it changes must be in `resumable`
    (anything else must match the run's config.yaml)."""
    import dataclasses

    ckpt = latest_checkpoint(out)
    if ckpt is None:
        raise ConfigError(f"--resume: no complete checkpoint in {out / 'checkpoints'} (the run "
                          "stopped before its first one). Start over with --overwrite.")
    saved_path = out / "config.yaml"
    if saved_path.is_file():
        import yaml

        saved = yaml.safe_load(saved_path.read_text()) or {}
        now = dataclasses.asdict(cfg)
        diff = [f"--{k.replace('_', '-')}: {saved[k]!r} -> {now[k]!r}" for k in saved
                if k in now and k not in resumable and saved[k] != now[k]]
        if diff:
            raise ConfigError(f"--resume with options that differ from {saved_path}:\n  " +
                              "\n  ".join(diff) + "\nResume with the original options "
                              f"(--config {saved_path} --resume), or start a new --out.")
    return ckpt


def restore(accelerator, ckpt: Path, extra: dict, *, trainable: set[str] | None
            ) -> tuple[dict, int | None]:
    """Load `ckpt` into the prepared objects; return (its trainer state, the step count its
    schedule was planned for: None in older checkpoints). `extra` is this run's identity (the
    data it trains on): a checkpoint of other data is refused."""
    saved = load_checkpoint(accelerator, ckpt, trainable=trainable)
    identity = {k: v for k, v in extra.items() if k != PLANNED_STEPS}
    was_planned = saved.get("extra", {}).pop(PLANNED_STEPS, None)
    if saved.get("extra", {}) != identity:
        raise ConfigError(f"--resume: the training data changed since {ckpt} was written "
                          f"({saved.get('extra')} vs now {identity}). Resume with the "
                          "same data, or start a new --out.")
    return saved, was_planned


def replan_schedule(scheduler, ckpt: Path, step: int, was: int | None, total: int,
                    lr_before: Callable[[int], float] | None) -> str:
    """A resume whose plan has another step count (--max-steps/--epochs changed) re-plans the lr
    schedule: make the next step use the new schedule's lr (the checkpoint restored the old
    plan's) and return a notice saying what changed, so nothing about it is silent.
    `lr_before(was)`: the old plan's lr at `step`."""
    from .schedule import apply_lrs

    lrs = apply_lrs(scheduler)
    now = f"the learning rate at step {step + 1} is {lrs[0]:.3g}"
    if was is None or lr_before is None:
        return (f"[yellow]note:[/] {ckpt} does not record how many steps its learning-rate "
                "schedule was planned for (written by an older instruct-tune), so whether "
                f"--max-steps/--epochs changed is unknown: the schedule is planned for {total} "
                f"steps now and {now}.")
    return (f"[yellow]note:[/] the schedule is re-planned for {total} steps (was {was}): {now} "
            f"(it was {lr_before(was):.3g} at step {step}). --resume continues exactly only with "
            "the same --max-steps/--epochs.")
