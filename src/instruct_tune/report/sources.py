"""What a run directory holds, read into one `RunData` the HTML page is rendered from.

    train --out DIR   config.yaml, metrics.jsonl, eval.json (with --eval-data)
    demo --out DIR    report.json, audit.json, eval/<split>.json, train/ (a train run)
    eval --out F      the directory of F: every JSON in it that is an eval report

Every value keeps the file it came from (`Source`): the page says where each section comes from,
and the tests check each number on the page against that file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import ConfigError

EVAL_KEYS = {"model", "n", "stop_rate"}  # what makes a JSON file an eval report


@dataclass
class RunData:
    """Everything the page shows; empty parts are left out of the page."""

    root: Path
    kind: str  # "train", "demo" or "eval"
    config: dict = field(default_factory=dict)  # the train run's config.yaml
    config_file: str | None = None  # relative to root
    metrics: list[dict] = field(default_factory=list)  # metrics.jsonl records
    metrics_file: str | None = None
    evals: dict[str, dict] = field(default_factory=dict)  # split -> eval report
    eval_files: dict[str, str] = field(default_factory=dict)  # split -> file (relative)
    audit: dict | None = None  # audit to_dict(): lever -> {status, verdict, findings, ...}
    audit_file: str | None = None
    demo: dict | None = None  # the demo's report.json
    problems: list[str] = field(default_factory=list)  # files that could not be read


def _read_json(path: Path, problems: list[str]):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        problems.append(f"{path.name}: not readable JSON ({e})")
        return None


def read_metrics(path: Path, problems: list[str]) -> list[dict]:
    """metrics.jsonl's records; a torn last line (a run killed mid-write) is skipped."""
    records = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            problems.append(f"{path.name}:{i}: not a JSON line (skipped)")
            continue
        if isinstance(rec, dict) and isinstance(rec.get("step"), int):
            records.append(rec)
    return records


def _is_eval(data) -> bool:
    return isinstance(data, dict) and set(data) >= EVAL_KEYS


def _add_train(data: RunData, run: Path) -> None:
    """A train run's config, metrics and eval.json (run may be root or the demo's train/)."""
    prefix = "" if run == data.root else f"{run.relative_to(data.root)}/"
    if (run / "config.yaml").is_file():
        try:
            data.config = yaml.safe_load((run / "config.yaml").read_text()) or {}
            data.config_file = f"{prefix}config.yaml"
        except (OSError, yaml.YAMLError) as e:
            data.problems.append(f"{prefix}config.yaml: not readable ({e})")
    if (run / "metrics.jsonl").is_file():
        data.metrics = read_metrics(run / "metrics.jsonl", data.problems)
        data.metrics_file = f"{prefix}metrics.jsonl"
    if (run / "eval.json").is_file() and _is_eval(report := _read_json(run / "eval.json",
                                                                          data.problems)):
        data.evals["eval"] = report
        data.eval_files["eval"] = f"{prefix}eval.json"


def load_run(root: str | Path) -> RunData:
    """Read a train, demo or eval output directory. Raises ConfigError if it is none of these."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"{root}: not a directory. Give a train or demo --out, or the directory "
                          "of an eval --out JSON file.")
    data = RunData(root=root, kind="eval")
    if (root / "report.json").is_file() and (root / "train").is_dir():
        data.kind = "demo"
        data.demo = _read_json(root / "report.json", data.problems)
        _add_train(data, root / "train")
        data.evals.pop("eval", None)
        for path in sorted((root / "eval").glob("*.json")):
            if _is_eval(report := _read_json(path, data.problems)):
                data.evals[path.stem] = report
                data.eval_files[path.stem] = f"eval/{path.name}"
        _order_demo_splits(data)
    elif (root / "metrics.jsonl").is_file() or (root / "config.yaml").is_file():
        data.kind = "train"
        _add_train(data, root)
    else:
        for path in sorted(root.glob("*.json")):
            if path.name != "audit.json" and _is_eval(report := _read_json(path, data.problems)):
                data.evals[path.name] = report  # named by its file: eval --out chose the name
                data.eval_files[path.name] = path.name
    if (root / "audit.json").is_file():
        audit = _read_json(root / "audit.json", data.problems)
        if isinstance(audit, dict) and all(isinstance(v, dict) and "status" in v
                                           for v in audit.values()):
            data.audit, data.audit_file = audit, "audit.json"
    if not (data.metrics or data.evals or data.config or data.demo):
        raise ConfigError(f"{root} holds no run to report on: expected a train --out "
                          "(metrics.jsonl, config.yaml), a demo --out (report.json) or eval "
                          "reports (eval --out FILE.json)."
                          + (f" Problems: {'; '.join(data.problems)}" if data.problems else ""))
    return data


def _order_demo_splits(data: RunData) -> None:
    """The demo's splits in its own order (report.json's eval), the others after them."""
    order = list((data.demo or {}).get("eval", {}))
    data.evals = dict(sorted(data.evals.items(),
                             key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))


__all__ = ["RunData", "load_run", "read_metrics"]
