"""`instruct-tune demo`: the offline end-to-end story (demo/run.py)."""

from __future__ import annotations

from ..config import DemoConfig
from ..outdir import DEMO, guard


def preflight(cfg: DemoConfig) -> None:
    """Check --out and claim it before anything loads (demo() checks again, for API users)."""
    guard(cfg.out, DEMO, flag="--out", overwrite=cfg.overwrite)


def run(cfg: DemoConfig) -> int:
    from ..demo.run import demo

    demo(cfg)
    return 0
