"""Data audit on the four levers: size, task diversity, phrasing diversity, output quality. Python API: `from instruct_tune.audit import audit`."""

from .report import audit

__all__ = ["audit"]
