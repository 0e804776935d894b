"""Experiment trackers: every record of metrics.jsonl also goes to TensorBoard or Weights & Biases
(`train --report-to tensorboard|wandb`), through the libraries themselves.

    open_trackers(run_dir, ...)    the trackers a run asked for in its config.yaml (MetricsLog)

A missing library is found before anything loads (TrainConfig.problems, config.py).

Each tracker gets every numeric value of a record at the record's step, under the key
metrics.jsonl uses (loss, lr, grad_norm, tokens_per_s, eval_loss, eval/stop_rate, ...), and the
run's resolved config once (TensorBoard: as hparams and as text; wandb: as the run's config).
Files go into the run directory: DIR/tensorboard/ (`tensorboard --logdir DIR/tensorboard`) and
DIR/wandb/.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import socket
import sys
from pathlib import Path
from typing import Protocol

TB_DIR, WANDB_DIR = "tensorboard", "wandb"
_WANDB_ID = "instruct-tune-run-id"  # inside DIR/wandb: a resumed run continues the same wandb run


class Tracker(Protocol):
    def log(self, values: dict[str, float], step: int) -> None: ...

    def close(self) -> None: ...


def scalars(record: dict) -> dict[str, float]:
    """The numeric values of a metrics record, without the step (None: not measured this step)."""
    return {k: float(v) for k, v in record.items()
            if k != "step" and isinstance(v, int | float) and not isinstance(v, bool)
            and math.isfinite(v)}


def open_trackers(run_dir: Path, resume_step: int | None = None,
                  config: dict | None = None) -> list[Tracker]:
    """The trackers `config['report_to']` names (config: the run's config.yaml when not given;
    none when there is none). `resume_step`: a resumed run, whose later steps are redone."""
    if config is None:
        path = Path(run_dir) / "config.yaml"
        if not path.is_file():
            return []
        import yaml

        config = yaml.safe_load(path.read_text()) or {}
    name = config.get("report_to") or "none"
    if name == "tensorboard":
        return [TensorBoardTracker(Path(run_dir) / TB_DIR, config, resume_step)]
    if name == "wandb":
        return [WandbTracker(Path(run_dir), config, resume_step)]
    return []


def _hparam(value):
    """TensorBoard's hparams take numbers, strings and bools only."""
    return value if isinstance(value, int | float | str | bool) else json.dumps(value)


class TensorBoardTracker:
    """torch's SummaryWriter into DIR/tensorboard; hparams in the same event file as the scalars
    (SummaryWriter.add_hparams would open a second run per call)."""

    def __init__(self, logdir: Path, config: dict, resume_step: int | None = None):
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        # purge_step: TensorBoard drops what an interrupted session logged after the checkpoint.
        self.writer = SummaryWriter(log_dir=str(logdir), purge_step=None if resume_step is None
                                    else resume_step + 1)
        exp, ssi, self._end = hparams({k: _hparam(v) for k, v in config.items()},
                                      {"loss": 0.0, "eval_loss": 0.0})
        self.writer.file_writer.add_summary(exp)
        self.writer.file_writer.add_summary(ssi)
        import yaml

        text = yaml.safe_dump(config, sort_keys=False)
        # Markdown: four-space indent makes it a code block, so YAML keeps its lines.
        self.writer.add_text("config", "\n".join("    " + ln for ln in text.splitlines()), 0)

    def log(self, values: dict[str, float], step: int) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()  # a run killed mid-way keeps what it logged, as metrics.jsonl does

    def close(self) -> None:
        self.writer.file_writer.add_summary(self._end)
        self.writer.close()


def wandb_mode() -> tuple[str, str | None]:
    """'online' or 'offline', and why offline. WANDB_MODE decides when set; otherwise online only
    when logged in and api.wandb.ai answers (wandb would otherwise retry for minutes)."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"], None
    if not (os.environ.get("WANDB_API_KEY") or _netrc_has("api.wandb.ai")):
        return "offline", "not logged in (wandb login)"
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("//")[-1].split("/")[0]
    try:
        socket.create_connection((host.split(":")[0], int(host.split(":")[1]) if ":" in host
                                  else 443), timeout=3).close()
    except OSError:
        return "offline", f"{host} cannot be reached"
    return "online", None


def _netrc_has(host: str) -> bool:
    import netrc

    try:
        return netrc.netrc().authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


class WandbTracker:
    """A wandb run in DIR/wandb (offline when there is no network: `wandb sync` uploads it later)."""

    def __init__(self, run_dir: Path, config: dict, resume_step: int | None = None):
        import wandb

        mode, why = wandb_mode()
        (run_dir / WANDB_DIR).mkdir(parents=True, exist_ok=True)
        id_file = run_dir / WANDB_DIR / _WANDB_ID
        run_id = id_file.read_text().strip() if resume_step is not None and id_file.is_file() \
            else secrets.token_hex(4)  # wandb's own ids are 8 characters too
        id_file.write_text(run_id + "\n")
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "instruct-tune"),
                              name=run_dir.name, id=run_id, resume="allow", dir=str(run_dir),
                              config=config, mode=mode)
        if why:
            print(f"note: wandb runs offline ({why}); upload later with: wandb sync "
                  f"{run_dir / WANDB_DIR}/offline-run-*", file=sys.stderr)

    def log(self, values: dict[str, float], step: int) -> None:
        self.run.log(values, step=step)

    def close(self) -> None:
        self.run.finish()


__all__ = ["Tracker", "open_trackers", "scalars"]
