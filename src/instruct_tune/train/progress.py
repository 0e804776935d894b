"""What a person watching the run sees: a live rich bar (loss, tokens/s, ETA) on a terminal, plain
log lines with --quiet or when output goes to a file. Only the main process prints."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True, highlight=False, soft_wrap=True)


class TrainProgress:
    """`update` every step (cheap: rich redraws at most a few times a second); `line` prints a
    log line above the bar (or alone in quiet mode)."""

    def __init__(self, total: int, start: int, *, enabled: bool, quiet: bool):
        self.enabled, self.total, self.start, self.quiet = enabled, total, start, quiet
        self.live = enabled and not quiet and console.is_terminal
        self._t0 = time.monotonic()
        if self.live:
            self.bar = Progress(
                TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[tps]} tok/s"),
                TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                console=console, transient=False)
            self.task = self.bar.add_task("train", total=total, completed=start, loss="-", tps="-")
            self.bar.start()

    def update(self, step: int, loss: float | None = None, tokens_per_s: float | None = None) -> None:
        if self.live:
            fields = {}
            if loss is not None:
                fields["loss"] = f"{loss:.4f}"
            if tokens_per_s is not None:
                fields["tps"] = f"{tokens_per_s:,.0f}"
            self.bar.update(self.task, completed=step, **fields)

    def set_total(self, total: int) -> None:
        self.total = total
        if self.live:
            self.bar.update(self.task, total=total)

    def eta(self, step: int) -> float | None:
        done = step - self.start
        if done <= 0:
            return None
        return (time.monotonic() - self._t0) / done * (self.total - step)

    def log(self, record: dict) -> None:
        """A metrics record as one readable line (quiet mode, non-terminal output, evals)."""
        if not self.enabled:
            return
        parts = [f"step {record['step']}/{self.total}"]
        for key, fmt in (("loss", "loss {:.4f}"), ("eval_loss", "eval_loss {:.4f}"),
                         ("rewards/accuracies", "acc {:.2f}"), ("rewards/margins", "margin {:.3f}"),
                         ("eval_rewards/accuracies", "eval_acc {:.2f}"),
                         ("lr", "lr {:.2e}"), ("grad_norm", "grad_norm {:.3f}"),
                         ("tokens_per_s", "{:,.0f} tok/s")):
            if record.get(key) is not None:
                parts.append(fmt.format(record[key]))
        eta = self.eta(record["step"])
        if eta is not None and record["step"] < self.total:
            parts.append(f"eta {hms(eta)}")
        self.line("  ".join(parts))

    def generation(self, step: int, metrics: dict, samples: list[str]) -> None:
        """The generation check at an eval: one line, then a few sample answers (not --quiet)."""
        if not self.enabled:
            return
        self.line(f"generation @ step {step}: stops {metrics['eval/stop_rate']:.0%} · exact "
                  f"{metrics['eval/exact_match']:.0%} · leaks "
                  f"{metrics['eval/template_leak_rate']:.0%} · "
                  f"{metrics['eval/mean_length']:.1f} tokens")
        for text in [] if self.quiet else samples:
            self.line(text, markup=False)  # model output: never rich markup

    def line(self, text: str, markup: bool = True) -> None:
        if self.enabled:
            (self.bar.console if self.live else console).print(text, markup=markup)

    def close(self) -> None:
        if self.live:
            self.bar.stop()
            self.live = False


def hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"

