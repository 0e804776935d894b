"""Data audit on the four levers: size, task diversity, phrasing diversity, output quality.

`from instruct_tune.audit import audit` is the Python API (report.audit); imported lazily so
that importing one module of this stage stays cheap.
"""


def __getattr__(name: str):
    if name == "audit":
        from .report import audit

        return audit
    raise AttributeError(f"module 'instruct_tune.audit' has no attribute {name!r}")
