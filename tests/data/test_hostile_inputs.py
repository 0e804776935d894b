"""Hostile inputs (issue 9): each case is loaded correctly or gives a clear error naming the file,
line and field with what to do. Never a traceback (any non-InstructTuneError fails the test) and
never a hang (each case runs under an alarm). The table is the corpus; its size is the count.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import tracemalloc
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from instruct_tune.data.load import LoadResult, load_records_report
from instruct_tune.errors import DataError, InstructTuneError

OK = '{"instruction": "Say hi.", "output": "Hi!"}\n'
MB100 = 100_000_000


def jl(*rows) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def huge_line(valid: bool) -> Callable[[Path], None]:
    def build(path: Path) -> None:
        with path.open("wb") as f:
            f.write(b'{"instruction": "x", "output": "')
            f.write(b"y" * MB100)
            f.write(b'"}\n' if valid else b"\n")
            f.write(OK.encode())
    return build


def tree(files: dict[str, bytes]) -> Callable[[Path], None]:
    def build(path: Path) -> None:
        path.mkdir()
        for name, data in files.items():
            (path / name).write_bytes(data)
    return build


@dataclass
class Case:
    id: str
    name: str  # file (or directory) name under tmp_path; absolute for system paths
    content: bytes | str | Callable[[Path], None] | None  # None: do not create anything
    n: int | None = None  # expected records when it loads
    words: tuple[str, ...] = ()  # must appear in the error message (what is wrong, what to do)
    line: int | None = None  # the error must point at path:line
    field: str | None = None  # ... and [field]
    kwargs: dict = dataclasses.field(default_factory=dict)
    check: Callable[[LoadResult], bool] | None = None


def out(r: LoadResult, i: int = 0) -> str:
    return r.records[i].output


CASES = [
    # --- malformed JSON
    Case("jsonl-malformed-line", "d.jsonl", OK + '{"instruction": "x", "output": \n' + OK,
         words=("invalid JSON", "--skip-invalid"), line=2),
    Case("jsonl-malformed-line-skipped", "d.jsonl", OK + "{nope\n" + OK, n=2,
         kwargs={"skip_invalid": True}, check=lambda r: [p.line for p in r.skipped] == [2]),
    Case("jsonl-truncated-last-line", "d.jsonl", OK + '{"instruction": "x", "out', words=(
        "invalid JSON",), line=2),
    Case("jsonl-row-is-array", "d.jsonl", OK + '["instruction", "output"]\n',
         words=("expected an object",), line=2),
    Case("jsonl-row-is-string", "d.jsonl", '"just text"\n' + OK, words=("expected an object",),
         line=1),
    Case("json-trailing-comma", "d.json", "[\n" + OK.strip() + ",\n]\n", words=("invalid JSON",),
         line=3),
    Case("json-missing-close", "d.json", "[\n" + OK.strip() + "\n", words=("invalid JSON",)),
    Case("json-garbage-after-array", "d.json", "[" + OK.strip() + "] x", words=("extra text",)),
    Case("json-bad-element", "d.json", "[\n" + OK.strip() + ",\n{oops}\n]", words=(
        "invalid JSON", "JSON Lines"), line=3),
    Case("huge-integer-literal", "d.jsonl", OK + '{"instruction": "x", "output": ' + "9" * 5000
         + "}\n", words=("invalid JSON",), line=2),
    # --- encodings and line endings
    Case("utf8-bom-jsonl", "d.jsonl", b"\xef\xbb\xbf" + OK.encode() * 2, n=2),
    Case("utf8-bom-json", "d.json", b"\xef\xbb\xbf[" + OK.strip().encode() + b"]", n=1),
    Case("utf8-bom-csv", "d.csv", b"\xef\xbb\xbfinstruction,output\nx,y\n", n=1,
         check=lambda r: r.records[0].meta == {}),
    Case("crlf-jsonl", "d.jsonl", OK.replace("\n", "\r\n") * 2, n=2,
         check=lambda r: out(r) == "Hi!"),
    Case("crlf-csv", "d.csv", "instruction,output\r\nx,y\r\n\"a\",\"b\"\r\n", n=2,
         check=lambda r: [out(r, 0), out(r, 1)] == ["y", "b"] and r.records[1].source.line == 3),
    Case("crlf-json", "d.json", "[\r\n" + OK.strip() + ",\r\n" + OK.strip() + "\r\n]", n=2,
         check=lambda r: [x.source.line for x in r.records] == [2, 3]),
    Case("cr-only-line-endings", "d.jsonl", OK.replace("\n", "\r") * 3, n=3,
         check=lambda r: [x.source.line for x in r.records] == [1, 2, 3]),
    Case("utf16-with-bom", "d.jsonl", "\ufeff".encode("utf-16-le") + (OK * 2).encode("utf-16-le"),
         n=2),
    Case("utf16-without-bom", "d.jsonl", (OK * 50).encode("utf-16-le"),
         words=("not look like a text file", "UTF-8")),
    Case("latin1-byte-jsonl", "d.jsonl", OK.encode() + '{"instruction": "café", "output": "x"}\n'
         .encode("latin-1"), words=("not valid UTF-8", "0xe9", "iconv"), line=2),
    Case("latin1-byte-csv", "d.csv", "instruction,output\nx,y\nz,café\n".encode("latin-1"),
         words=("not valid UTF-8", "0xe9", "iconv"), line=3, field="output"),
    Case("latin1-byte-json", "d.json", ('[\n{"instruction": "x", "output": "y"},\n'
         '{"instruction": "café", "output": "y"}\n]').encode("latin-1"),
         words=("not valid UTF-8",), line=3, field="instruction"),
    Case("latin1-skipped", "d.jsonl", OK.encode() + b'{"instruction": "caf\xe9", "output": "x"}\n',
         n=1, kwargs={"skip_invalid": True}),
    Case("lone-surrogate-escape", "d.jsonl", OK + '{"instruction": "\\ud800", "output": "x"}\n',
         words=("unpaired surrogate",), line=2, field="instruction"),
    # --- NUL bytes and binary
    Case("nul-byte-in-line", "d.jsonl", OK.encode() + b'{"instruction": "a\x00b", "output": "x"}\n',
         words=("NUL",), line=2),
    Case("nul-escape-in-field", "d.jsonl", OK + '{"instruction": "x", "output": "a\\u0000b"}\n',
         words=("NUL character",), line=2, field="output"),
    Case("nul-in-csv-field", "d.csv", b"instruction,output\nx,y\x00z\n", words=("NUL",), line=2,
         field="output"),
    Case("binary-garbage-jsonl", "d.jsonl", random.Random(0).randbytes(50_000),
         words=("not look like a text file",)),
    Case("binary-garbage-csv", "d.csv", random.Random(1).randbytes(50_000),
         words=("not look like a text file",)),
    Case("binary-garbage-json", "d.json", random.Random(2).randbytes(500),
         words=("not look like a text file",)),
    Case("gzip-named-jsonl", "d.jsonl", b"\x1f\x8b\x08\x00" + bytes(100), words=("gzip", "gunzip")),
    Case("corrupt-parquet", "d.parquet", b"PAR1" + random.Random(3).randbytes(1000) + b"PAR1",
         words=("not a readable Parquet file",)),
    Case("parquet-named-jsonl", "d.jsonl", b"PAR1" + bytes(100), words=("Parquet", ".parquet")),
    # --- empty and no valid rows
    Case("empty-jsonl", "d.jsonl", b"", words=("empty",)),
    Case("empty-json", "d.json", b"", words=("empty",)),
    Case("empty-csv", "d.csv", b"", words=("empty",)),
    Case("empty-parquet", "d.parquet", b"", words=("empty",)),
    Case("whitespace-only", "d.jsonl", "\n \n\r\n\t\n", words=("empty",)),
    Case("empty-json-array", "d.json", "[ ]", words=("no rows",)),
    Case("csv-header-only", "d.csv", "instruction,output\n", words=("no rows",)),
    Case("no-valid-rows", "d.jsonl", jl({"instruction": "", "output": "x"}, {"output": "y"}),
         kwargs={"skip_invalid": True}, words=("No valid rows", "[instruction]")),
    Case("all-lines-malformed", "d.jsonl", "{a\n{b\n", words=("No valid rows",), line=2),
    # --- wrong types
    Case("output-number", "d.jsonl", jl({"instruction": "x", "output": 3}),
         words=("must be a string", "got number"), line=1, field="output"),
    Case("instruction-list", "d.jsonl", jl({"instruction": ["a"], "output": "y"}),
         words=("got array",), line=1, field="instruction"),
    Case("output-null", "d.jsonl", jl({"instruction": "x", "output": None}), words=("got null",),
         line=1, field="output"),
    Case("input-number", "d.jsonl", jl({"instruction": "x", "input": 1, "output": "y"}),
         words=("got number",), line=1, field="input"),
    Case("parquet-int-column", "d.parquet", lambda p: _parquet(p, [{"instruction": "x", "output": 1}]),
         words=("got number",), line=1, field="output"),
    Case("huge-wrong-type-not-echoed", "d.jsonl", jl({"instruction": "x", "output": ["y" * 10**7]}),
         words=("got array",), line=1, field="output"),
    Case("messages-not-list", "d.jsonl", jl({"messages": "hi"}), words=("list of messages",),
         line=1, field="messages"),
    Case("unknown-role", "d.jsonl", jl({"messages": [{"role": "user", "content": "a"},
                                                     {"role": "tool", "content": "b"}]}),
         words=("unknown role", "assistant"), line=1, field="messages[1].role"),
    Case("no-assistant-turn", "d.jsonl", jl({"messages": [{"role": "user", "content": "a"}]}),
         words=("no assistant turn",), line=1, field="messages"),
    # --- missing columns
    Case("missing-columns-synonyms", "d.jsonl", jl({"question": "q", "answer": "a"}),
         words=("columns found: answer, question", "--columns instruction=question,output=answer")),
    Case("missing-columns-unknown", "d.csv", "foo,bar\n1,2\n", words=("columns found: bar, foo",
                                                                      "--columns", "--format")),
    Case("missing-output-column", "d.jsonl", jl({"instruction": "x", "reply": "y"}),
         words=("column missing in every row",), field="output"),
    Case("csv-ragged-row", "d.csv", "instruction,output\nx,y\nonly-one\n",
         words=("1 field(s)", "quoting"), line=3),
    Case("csv-unterminated-quote", "d.csv", 'instruction,output\nx,y\n"a,b\nc\n',
         words=("quoting",), line=3),
    Case("csv-duplicate-header", "d.csv", "instruction,output,output\nx,y,z\n",
         words=("duplicate column",), line=1),
    # --- size and depth
    Case("100mb-line-valid", "d.jsonl", huge_line(valid=True), n=2,
         check=lambda r: len(out(r)) == MB100),
    Case("100mb-line-malformed", "d.jsonl", huge_line(valid=False), n=1,
         kwargs={"skip_invalid": True}, check=lambda r: r.skipped[0].line == 1),
    Case("10mb-output-csv", "d.csv", "instruction,output\nx," + "y" * 10**7 + "\n", n=1),
    Case("deep-nesting-line", "d.jsonl", OK + nested(200_000) + "\n", words=("nested too deeply",),
         line=2),
    Case("deep-nesting-in-field", "d.jsonl",
         OK + '{"instruction": "x", "output": ' + nested(200_000) + "}\n",
         words=("nested too deeply",), line=2),
    Case("deep-nesting-json-array", "d.json", "[\n" + OK.strip() + ",\n" + nested(200_000) + "]",
         words=("nested too deeply",), line=3),
    Case("moderate-nesting-in-meta", "d.jsonl",
         '{"instruction": "x", "output": "y", "extra": ' + nested(500) + "}\n", n=1),
    Case("moderate-nesting-wrong-type", "d.jsonl",
         '{"instruction": "x", "output": ' + nested(900) + "}\n", words=("got array",), line=1),
    # --- template markers are data
    Case("template-markers-in-fields", "d.jsonl",
         jl({"instruction": "### Response:\nfake", "input": "### Instruction:", "output": "<|im_end|>"}),
         n=1, check=lambda r: r.records[0].instruction == "### Response:\nfake"),
    # --- paths
    Case("nonexistent-file", "missing.jsonl", None, words=("no such file",)),
    Case("nonexistent-typo", "dat.jsonl", None, words=("did you mean", "data.jsonl")),
    Case("path-too-long", "x" * 5000 + ".jsonl", None, words=("cannot open",)),
    Case("path-with-nul-char", "a\x00b.jsonl", None, words=("no such file",)),
    Case("not-a-regular-file", "/dev/null", None, words=("not a regular file",)),
    Case("dir-without-data", "dir", tree({"notes.md": b"# hi", "model.bin": b"x"}),
         words=("no data files", "notes.md")),
    Case("empty-dir", "dir", tree({}), words=("no data files",)),
    Case("dir-with-a-bad-file", "dir", tree({"a.jsonl": OK.encode(), "b.jsonl": b"{x\n"}),
         words=("b.jsonl:1", "invalid JSON")),
    Case("unknown-extension", "d.xyz", "instruction\toutput\n", words=("unknown file type", ".xyz")),
    Case("xlsx", "d.xlsx", b"PK\x03\x04" + bytes(100), words=("zip", "CSV")),
    Case("txt-holding-jsonl", "d.txt", OK * 2, n=2),
    Case("no-extension-json", "data", "[" + OK.strip() + "]", n=1),
    # --- options
    Case("bad-columns-spec", "d.jsonl", OK, kwargs={"columns": "instruction"}, words=("--columns",)),
    Case("unknown-format", "d.jsonl", OK, kwargs={"format": "yaml"}, words=("--format",)),
    Case("many-bad-rows", "d.jsonl", "{x\n" * 10_000 + OK, words=("and 9950 more",)),
]


def _parquet(path: Path, rows: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)


@contextmanager
def deadline(seconds: int):
    """Fail instead of hanging."""
    def on_alarm(*_):
        raise TimeoutError(f"hung for more than {seconds}s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_corpus_size():
    assert len({c.id for c in CASES}) == len(CASES) >= 60


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input(tmp_path, case: Case):
    path = Path(case.name) if os.path.isabs(case.name) else tmp_path / case.name
    if case.id == "nonexistent-typo":
        (tmp_path / "data.jsonl").write_text(OK)
    if callable(case.content):
        case.content(path)
    elif case.content is not None:
        path.write_bytes(case.content.encode() if isinstance(case.content, str) else case.content)
    error = None
    with deadline(60):
        try:
            result = load_records_report(path, **case.kwargs)
        except InstructTuneError as e:  # anything else propagates and fails the test
            error = e
    if case.n is not None:
        assert error is None, str(error)
        assert len(result.records) == case.n
        assert case.check is None or case.check(result)
        return
    assert error is not None, "expected a clear error, but the input loaded"
    msg = str(error)
    assert len(msg) < 20_000  # never echoes the 10 MB value
    for w in case.words:
        assert w in msg, msg
    if isinstance(error, DataError):
        assert all(p.path.startswith(str(path)) for p in error.problems), msg
        assert msg.rstrip().splitlines()[-1].strip(), "the last line says what to do"
    if case.line is not None:
        assert f"{path}:{case.line}" in msg, msg
    if case.field is not None:
        assert f"[{case.field}]" in msg, msg


def test_100mb_line_memory_stays_bounded(tmp_path):
    path = tmp_path / "big.jsonl"
    huge_line(valid=True)(path)
    tracemalloc.start()
    try:
        with deadline(60):
            records = load_records_report(path).records
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(records[0].output) == MB100
    assert peak < 4 * MB100  # a few copies of the line, never more
