"""The training loop, top to bottom: batches -> forward -> loss over trained tokens -> backward ->
step -> log -> maybe evaluate -> maybe checkpoint. No callbacks.

The loss of an optimizer step is the sum of per-unit losses (token cross-entropies for SFT,
per-pair losses for preference tuning: objective.py) over ALL its micro-batches and processes
divided by the units of the whole step (known up front from the plan). Averaging per micro-batch
instead would weigh a short row's tokens more than a long row's. DDP averages gradients over
processes, so each process scales its sum by world / units.

One host sync per optimizer step (loss, grad norm and stop flags, reduced over processes in one
call): enough to stop on NaN before a bad update and to stop all processes at the same step.
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..config import TrainConfig
from ..errors import InstructTuneError
from .checkpoint import PLANNED_STEPS, latest_checkpoint, save_checkpoint, test_signal
from .objective import SFT
from .outdir import MetricsLog
from .plan import Plan
from .progress import TrainProgress, hms
from .schedule import replan


class NonFiniteLossError(InstructTuneError):
    """The loss or gradient became NaN/inf."""


class TrainingInterrupted(InstructTuneError):
    """Ctrl-C: a checkpoint was saved; `checkpoint` says where."""

    exit_code = 130

    def __init__(self, message: str, checkpoint: Path):
        super().__init__(message)
        self.checkpoint = checkpoint


@dataclass
class TrainState:
    """Counters a checkpoint restores besides tensors (the data position follows from `step`)."""

    step: int = 0
    trained_tokens: int = 0  # loss units so far: trained tokens (SFT) or pairs (preference)
    elapsed: float = 0.0  # seconds of training over all sessions
    skipped_steps: int = 0  # non-finite steps skipped with --skip-nonfinite
    extra: dict = field(default_factory=dict)  # run identity checked on resume


@dataclass
class Run:
    """Everything the loop touches, built by run.py."""

    cfg: TrainConfig
    out: Path
    accelerator: object
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    plan: Plan
    eval_plan: Plan | None
    state: TrainState
    metrics: MetricsLog
    progress: TrainProgress
    max_time: float | None = None  # seconds for this session
    model_files: Callable[[Path], None] | None = None  # makes a checkpoint a model directory
    # Generation check at each eval (evaluate/during_training.py), with the tokenizer and template
    # it needs: called on the main process only; returns (metrics, lines to show).
    generation_check: Callable | None = None

    def __post_init__(self) -> None:
        self.planned_steps = self.plan.total_steps  # before --max-time fits it to the budget


def train_loop(r: Run) -> str:
    """Train until the plan ends, --max-steps, --max-time or Ctrl-C. Returns why it stopped
    ("done" or "time"); raises TrainingInterrupted after saving a checkpoint on Ctrl-C."""
    stop = StopRequest()
    with stop.catching():
        return _loop(r, stop)


@dataclass
class Window:
    """What happened since the last log line."""

    started: float
    loss: float = 0.0  # sum of per-unit losses of the applied steps
    units: int = 0  # their loss units (trained tokens, or pairs)
    tokens: int = 0  # real tokens, for tokens/s
    metrics: torch.Tensor | None = None  # the objective's metric sums

    def add(self, loss: float, units: int, metrics: torch.Tensor) -> None:
        self.loss += loss
        self.units += units
        self.metrics = metrics if self.metrics is None else self.metrics + metrics


def _loop(r: Run, stop: StopRequest) -> str:
    acc, model, opt, cfg, st = r.accelerator, r.model, r.optimizer, r.cfg, r.state
    objective = r.plan.objective
    world, rank, dev = acc.num_processes, acc.process_index, acc.device
    t0, elapsed0, saved_at, start = time.monotonic(), st.elapsed, st.step, st.step
    window = Window(t0)
    model.train()
    while st.step < r.plan.total_steps:
        step = st.step + 1
        micro = r.plan.step_batches(st.step)  # global micro-batches: example indices
        n_units, n_real = r.plan.tokens(micro)  # over all micro-batches and processes
        local = [r.plan.local_batch(rows, rank) for rows in micro]
        step_loss, sums = forward_backward(acc, model, local, scale=world / max(n_units, 1),
                                           objective=objective)
        max_norm = cfg.max_grad_norm if cfg.max_grad_norm > 0 else math.inf
        grad_norm = acc.clip_grad_norm_(model.parameters(), max_norm)
        test_signal(f"step:{step}")
        session = time.monotonic() - t0
        out_of_time = r.max_time is not None and session >= r.max_time
        # Stop flags, the session's time and metric sums travel with the loss in one reduce, so
        # all processes stop (and plan) alike; the step's one host sync.
        norm = (grad_norm if grad_norm is not None else torch.zeros(())).double().to(dev)
        stats = torch.cat([step_loss.double().reshape(1), norm.reshape(1) / world,
                           torch.tensor([float(stop.requested), float(out_of_time), session / world],
                                        dtype=torch.float64, device=dev), sums])
        if world > 1:
            stats = acc.reduce(stats, reduction="sum")
        loss_sum_all, gnorm, stop_int, stop_time, session = stats[:5].tolist()
        lr = r.scheduler.get_last_lr()[0]

        if not (math.isfinite(loss_sum_all) and math.isfinite(gnorm)):
            if not cfg.skip_nonfinite:
                raise NonFiniteLossError(_nonfinite_message(step, loss_sum_all, gnorm, r.out))
            st.skipped_steps += 1  # skip the update, keep the data position and schedule
            r.progress.line(f"step {step}: non-finite loss/gradient, update skipped "
                            f"({st.skipped_steps} so far)")
        else:
            opt.step()
            window.add(loss_sum_all, n_units, stats[5:].cpu())
        r.scheduler.step()
        opt.zero_grad(set_to_none=True)
        st.step = step
        st.trained_tokens += n_units
        now = time.monotonic()
        st.elapsed = elapsed0 + now - t0
        window.tokens += n_real
        r.progress.update(step, loss_sum_all / max(n_units, 1), None)

        last = step == r.plan.total_steps or stop_int > 0 or stop_time > 0
        eval_now = r.eval_plan is not None and (
            last or (cfg.eval_every > 0 and step % cfg.eval_every == 0))
        if step % max(cfg.log_every, 1) == 0 and not last:
            _pace(r, step, step - start, session)
        if eval_now or last or step % max(cfg.log_every, 1) == 0:
            record = {"step": step, "epoch": round(r.plan.epochs_done(step), 4),
                      "loss": window.loss / window.units if window.units else None,
                      **(objective.metrics(window.metrics) if window.metrics is not None else {}),
                      "lr": lr, "grad_norm": gnorm,
                      "tokens_per_s": window.tokens / max(now - window.started, 1e-9),
                      objective.units_name: st.trained_tokens,
                      "elapsed": round(st.elapsed, 3)}
            record.update(evaluate(r) if eval_now else {"eval_loss": None})
            if eval_now and r.generation_check is not None and acc.is_main_process:
                checked, lines = r.generation_check(acc.unwrap_model(model))
                if checked:
                    record.update(checked)
                    r.progress.generation(step, checked, lines)
            if st.skipped_steps:
                record["skipped_steps"] = st.skipped_steps
            r.metrics.write(record)
            r.progress.update(step, record["loss"], record["tokens_per_s"])
            if not r.progress.live or eval_now:
                r.progress.log(record)

        if last or (cfg.save_every > 0 and step % cfg.save_every == 0):
            save(r)
            saved_at = step
        if step % max(cfg.log_every, 1) == 0 or eval_now:  # after eval/save: not in tokens/s
            window = Window(time.monotonic())
        if stop_int > 0 and step < r.plan.total_steps:
            ckpt = latest_checkpoint(r.out)
            raise TrainingInterrupted(
                f"Interrupted at step {step}/{r.plan.total_steps}; checkpoint saved to {ckpt}.\n"
                f"Resume with: instruct-tune train --config {r.out / 'config.yaml'} --resume",
                ckpt)
        if stop_time > 0 and step < r.plan.total_steps:
            return "time"
    if saved_at != st.step:  # e.g. resumed from the last checkpoint of a finished run
        save(r)
    return "done"


def _pace(r: Run, step: int, done: int, session: float) -> None:
    """At each log point, from this session's measured pace: the time per epoch and ETA (once),
    and under --max-time with a cosine schedule, the schedule planned for the steps that fit the
    budget, so a budgeted run ends decayed instead of cut mid-schedule."""
    per_step = session / max(done, 1)
    if done == max(r.cfg.log_every, 1) or (done < r.cfg.log_every and step == r.plan.total_steps):
        left = per_step * (r.plan.total_steps - step)
        r.progress.line(f"pace: {per_step:.2f} s/step, ~{hms(per_step * r.plan.per_epoch)} per "
                        f"epoch; ETA {hms(left)}"
                        + (f" (--max-time {r.cfg.max_time})" if r.max_time else ""))
    if r.max_time is None or r.cfg.schedule != "cosine":
        return
    # 10% of the time left is kept for evals, checkpoints and a slower step now and then.
    fits = step + int(0.9 * max(r.max_time - session, 0.0) / max(per_step, 1e-9))
    total = max(step + 1, min(r.planned_steps, fits))
    if abs(total - r.plan.total_steps) <= max(1, r.plan.total_steps // 50):
        return
    warmup = math.ceil(r.cfg.warmup_ratio * total)
    replan(r.scheduler, warmup=warmup, total=total, kind=r.cfg.schedule)
    if r.plan.total_steps == r.planned_steps:
        r.progress.line(f"[yellow]note:[/] --max-time {r.cfg.max_time} leaves time for about "
                        f"{total} of the {r.planned_steps} planned steps: the learning-rate "
                        f"schedule now decays to 0 over {total} steps")
    r.plan.total_steps = total
    r.state.extra[PLANNED_STEPS] = total
    r.progress.set_total(total)


def forward_backward(acc, model, batches: list, scale: float, objective=None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward and backward over this process's micro-batches [(batch, weight)], each loss sum
    multiplied by `scale` (= processes / loss units of the whole step). Returns the unscaled
    sum of per-unit losses and the objective's metric sums (device tensors: no host sync)."""
    objective = objective or SFT()
    dev = acc.device
    total = torch.zeros((), device=dev)
    sums = torch.zeros(len(objective.metric_names), dtype=torch.float64, device=dev)
    for j, (batch, weight) in enumerate(batches):
        batch = batch.to(dev, non_blocking=True)
        # DDP all-reduces gradients only on the step's last micro-batch.
        with nullcontext() if j == len(batches) - 1 else acc.no_sync(model):
            with acc.autocast():
                loss, metrics = objective.loss(model, batch)
            acc.backward(loss * (scale * weight))
        total += loss.detach().float() * weight
        sums += metrics * weight
    return total, sums


def save(r: Run) -> Path:
    """Checkpoint the current step with the data position and counters."""
    st = r.state
    epoch, index = r.plan.position(st.step)
    state = {**asdict(st), "epoch": epoch, "batch_index": index,
             "world_size": r.accelerator.num_processes}
    return save_checkpoint(r.accelerator, r.out, st.step, state, r.cfg.keep_checkpoints,
                           r.model_files)


@torch.no_grad()
def evaluate(r: Run) -> dict[str, float]:
    """eval_loss (mean per loss unit over the eval set, all processes) and the objective's
    eval_ metrics; the model is left in train mode."""
    acc, plan = r.accelerator, r.eval_plan
    objective = plan.objective
    r.model.eval()
    total = torch.zeros(1 + len(objective.metric_names), dtype=torch.float64, device=acc.device)
    for rows in plan.micro_batches(0):
        batch, weight = plan.local_batch(rows, acc.process_index)
        with acc.autocast():
            loss, metrics = objective.loss(r.model, batch.to(acc.device))
        total += torch.cat([loss.double().reshape(1), metrics]) * weight
    if acc.num_processes > 1:
        total = acc.reduce(total, reduction="sum")
    r.model.train()
    total = total.cpu()
    return {"eval_loss": total[0].item() / max(sum(plan.trained), 1),
            **objective.metrics(total[1:], prefix="eval_")}


def _nonfinite_message(step: int, loss: float, gnorm: float, out: Path) -> str:
    ckpt = latest_checkpoint(out)
    where = (f"Last good checkpoint: {ckpt} (continue from it with --resume)." if ckpt else
             "No checkpoint was saved yet.")
    what = "loss" if not math.isfinite(loss) else "gradient norm"
    return (f"The {what} became {loss if what == 'loss' else gnorm} at step {step}; the update was "
            f"not applied. {where} Try a lower --lr, --precision fp32, or check the data of that "
            "step; or pass --skip-nonfinite to skip such steps.")


@dataclass
class StopRequest:
    """First Ctrl-C (or SIGTERM: preemption, torchrun shutting down) sets `requested`; the loop
    saves a checkpoint and stops after the current step. A second Ctrl-C interrupts at once."""

    requested: bool = False
    _previous: dict = field(default_factory=dict)

    def _handler(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    @contextmanager
    def catching(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            with suppress(ValueError):  # not the main thread (a notebook worker): keep default
                self._previous[sig] = signal.signal(sig, self._handler)
        try:
            yield self
        finally:
            for sig, old in self._previous.items():
                signal.signal(sig, old)
