"""`instruct-tune demo`: the offline end-to-end story (demo/run.py)."""

from __future__ import annotations

from ..config import DemoConfig


def run(cfg: DemoConfig) -> int:
    from ..demo.run import demo

    demo(cfg)
    return 0
