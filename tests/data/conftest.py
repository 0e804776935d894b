"""Fixtures for the data tests: write rows to a file in any supported format."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import pytest


def write_rows(path: Path, rows: list[dict]) -> Path:
    """Write dict rows as .jsonl/.json/.csv/.tsv/.parquet, chosen by the file's extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix
    if suffix in (".jsonl", ".ndjson"):
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                        encoding="utf-8")
    elif suffix == ".json":
        path.write_text(json.dumps(rows, ensure_ascii=False, indent=2), encoding="utf-8")
    elif suffix in (".csv", ".tsv"):
        cols = list(dict.fromkeys(k for r in rows for k in r))
        with path.open("w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=cols, delimiter="\t" if suffix == ".tsv" else ",")
            w.writeheader()
            w.writerows(rows)
    elif suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        raise ValueError(suffix)
    return path


@pytest.fixture
def write(tmp_path: Path) -> Callable[..., Path]:
    """write("name.ext", rows | bytes | str) -> path inside tmp_path."""

    def _write(name: str, content) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif isinstance(content, str):
            path.write_bytes(content.encode("utf-8"))
        else:
            write_rows(path, content)
        return path

    return _write
