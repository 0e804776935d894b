"""`instruct-tune curate`: apply what the audit finds. Python API:

    from instruct_tune.audit.curate import curate_files, select_rows, CurateOptions
    report = curate_files(["a.jsonl", "b.jsonl"], "clean.jsonl", eval_data="eval.jsonl")
    report.manifest["dropped"]  # every dropped row: path, line, reason, the row it refers to

`select_rows(records, ...)` is the in-memory part: which rows to keep and why the others go.
"""

from .files import CurateReport, check_out, curate_files, sources_of
from .select import REASONS, CurateOptions, Drop, Selection, select_rows

__all__ = ["REASONS", "CurateOptions", "CurateReport", "Drop", "Selection", "check_out",
           "curate_files", "select_rows", "sources_of"]
