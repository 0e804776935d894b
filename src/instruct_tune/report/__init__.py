"""`instruct-tune report RUN_DIR`: one self-contained HTML page for a train, eval or demo run
(sources.py reads the run, sections.py and tables.py render it, svg.py draws the curves).
Python API: `from instruct_tune.report import write_report`."""

from .page import write_report

__all__ = ["write_report"]
