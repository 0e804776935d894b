"""`instruct-tune report RUN_DIR [--out FILE]`: write RUN_DIR/report.html (report/)."""

from __future__ import annotations

from pathlib import Path

from ..config import ReportConfig


def preflight(cfg: ReportConfig) -> None:
    from ..report.page import check_target

    check_target(Path(cfg.out) if cfg.out else Path(cfg.run_dir) / "report.html")


def run(cfg: ReportConfig) -> int:
    from ..report import write_report

    path = write_report(cfg.run_dir, cfg.out, samples=cfg.samples)
    print(f"report written to {path} (open it in a browser: file://{path.resolve()})")
    return 0
