"""The run directory: refuse to clobber it and claim it (the guard in ..outdir, shared by every
command that writes a directory), check it has room for a checkpoint, and write config.yaml and
metrics.jsonl.

    DIR/config.yaml        resolved config, rewritten on --resume: how to continue the run
                           (--config DIR/config.yaml --resume)
    DIR/metrics.jsonl      one JSON object per logged step
    DIR/checkpoints/step-N full training state (see checkpoint.py)
    DIR/final/             the trained model, loadable with plain transformers
    DIR/tensorboard/       with --report-to tensorboard (DIR/wandb/: wandb), see trackers.py

Checks run before any slow work and before anything is deleted, so a typo never costs a run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

from ..config import TrainConfig
from ..config_file import save_yaml
from ..errors import ConfigError
from ..outdir import TRAIN, guard, prepare, release
from .trackers import Tracker, open_trackers, scalars


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output_dir(out: Path, *, overwrite: bool, resume: bool) -> None:
    """Fail early if --out may not be written (the one guard: ..outdir), then claim it for this
    run: a second run into the same --out is refused while this one lives. The claim is released
    at exit, or by `release_output_dir`."""
    guard(out, TRAIN, flag="--out", overwrite=overwrite, resume=resume)


def release_output_dir(out: Path) -> None:
    """End this process's claim on --out (a run that ends; a process that exits ends it too)."""
    release(out)


def checkpoint_bytes(trainable: int, total: int, lora: bool, weight_bytes: int = 4) -> int:
    """Rough size of one checkpoint: saved weights plus AdamW's two fp32 moments per trainable param."""
    weights = (trainable if lora else total) * weight_bytes
    return weights + 2 * 4 * trainable


def check_free_space(out: Path, ckpt_bytes: int, final_bytes: int, keep: int) -> str | None:
    """Raise if even one checkpoint and the final model do not fit; return a warning if the last
    `keep` checkpoints may not (older ones are deleted only after a new one is complete)."""
    free = shutil.disk_usage(_nearest_existing(out)).free
    need = ckpt_bytes + final_bytes
    if free < need:
        raise ConfigError(
            f"Not enough free disk space in {_nearest_existing(out)}: {_gb(free)} free, but one "
            f"checkpoint plus the final model need about {_gb(need)}. Free some space or choose "
            "another --out.")
    want = (keep + 1) * ckpt_bytes + final_bytes
    if free < want:
        return (f"only {_gb(free)} free; keeping {keep} checkpoints needs about {_gb(want)}. "
                "Consider --keep-checkpoints 1.")
    return None


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def create_output_dir(out: Path, *, overwrite: bool, resume: bool) -> None:
    """Create --out and mark it as a run; with --overwrite (and not --resume) remove what a
    previous run left there (the guard has checked it was a run)."""
    prepare(out, TRAIN, overwrite=overwrite, resume=resume)


def write_config(out: Path, cfg: TrainConfig) -> None:
    """Save the resolved config (atomically: a crash never leaves half a YAML file).

    --resume and --overwrite are what one invocation does, not options of the run: saved, an
    `overwrite: true` would make `--config DIR/config.yaml --resume` a conflict, and a plain
    `--config DIR/config.yaml` would delete the run."""
    tmp = out / ".config.yaml.tmp"
    save_yaml(dataclasses.replace(cfg, resume=False, overwrite=False), tmp)
    os.replace(tmp, out / "config.yaml")


class MetricsLog:
    """Appends one JSON line per logged step to DIR/metrics.jsonl, and hands its numbers to the
    experiment trackers (--report-to, trackers.py).

    On resume, lines after the resumed step are dropped first: a run killed after its last
    checkpoint logged steps that the resumed run will redo.
    """

    def __init__(self, path: Path, resume_step: int | None = None, enabled: bool = True,
                 trackers: list[Tracker] | None = None):
        self.path, self.enabled = path, enabled
        self.trackers: list[Tracker] = []
        if not enabled:
            return
        if resume_step is not None and path.exists():
            kept = [ln for ln in path.read_text().splitlines()
                    if ln.strip() and _step_of(ln) <= resume_step]
            tmp = path.with_suffix(".jsonl.tmp")
            tmp.write_text("".join(ln + "\n" for ln in kept))
            os.replace(tmp, path)
        self._f = path.open("a")
        # --report-to: given, or the ones the run's config.yaml (written before the log opens) names
        self.trackers = list(trackers) if trackers is not None else open_trackers(
            path.parent, resume_step)

    def write(self, record: dict) -> None:
        if self.enabled:
            self._f.write(json.dumps(record) + "\n")
            self._f.flush()
            values = scalars(record)
            for tracker in self.trackers:
                tracker.log(values, int(record["step"]))

    def close(self) -> None:
        if self.enabled:
            self._f.close()
            for tracker in self.trackers:
                tracker.close()
            self.trackers = []


def _step_of(line: str) -> int:
    try:
        return int(json.loads(line).get("step", 0))
    except (ValueError, AttributeError):
        return 1 << 62  # a torn last line from a killed run: drop it
