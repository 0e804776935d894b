"""File readers: turn one data file into `(line, row)` pairs, never raising anything but DataError.

A row is the parsed value (validate.py checks it) or a `Problem` when the line itself is unreadable
(bad JSON, bad bytes): those are row-level, so --skip-invalid can drop them. Problems with the whole
file (empty, binary, unknown type, a broken JSON array) raise DataError at once.

Choices for hostile input (each is tested in tests/data/test_hostile_inputs.py):
- UTF-8 BOM and CRLF line endings are accepted; UTF-16 with a BOM is decoded.
- Bytes that are not UTF-8 are an error naming the line, not silently replaced: replacement
  characters would become training targets the model learns to emit, and guessing latin-1 can
  be wrong. The fix (iconv) is one command; --skip-invalid drops just those rows.
- Binary files, compressed files and unknown extensions fail up front with what to do.
- JSON Lines are streamed line by line (peak memory ~3x the longest line, not the whole file);
  a 100 MB line is parsed or rejected without a hang; RecursionError from deep nesting never
  escapes. JSON arrays, CSV and Parquet are read whole (they cannot be split safely by lines).
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

from ..errors import DataError, Problem

SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv",
            ".parquet": "parquet"}
BOM = b"\xef\xbb\xbf"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
MAGIC = {b"\x1f\x8b": ("gzip-compressed file", "decompress it first (gunzip FILE)"),
         b"PK\x03\x04": ("zip archive (or Excel workbook)", "extract it, or export as CSV/JSONL"),
         b"PAR1": ("Parquet file", "rename it to end in .parquet")}
_WS = re.compile(r"[ \t\r\n]*")  # JSON whitespace
Row = tuple[int, object]  # (line or row number, parsed value or Problem)


def fail(name: str, message: str, hint: str, line: int | None = None) -> NoReturn:
    raise DataError([Problem(name, line, None, message)], hint=hint)


def read_file(path: Path, name: str) -> Iterator[Row]:
    """Pick a reader by extension (or by content when the extension is unknown)."""
    kind = SUFFIXES.get(path.suffix.lower())
    try:
        with open(path, "rb") as f:
            head = f.read(8192)
    except OSError as e:
        fail(name, f"cannot read the file ({e.strerror})", "check that it exists and is readable")
    if len(head) < 8192 and not head.strip(BOM + b" \t\r\n"):
        fail(name, "the file is empty", "point at a file with data rows")
    if kind == "parquet":
        return _read_parquet(path, name)
    for magic, (what, fix) in MAGIC.items():
        if head.startswith(magic):
            fail(name, f"this is a {what}, not {f'a {kind} file' if kind else 'text data'}", fix)
    if kind is None:
        if head.lstrip(BOM + b" \t\r\n")[:1] not in (b"{", b"["):
            fail(name, f"unknown file type {path.suffix or '(no extension)'!r}",
                 "use .jsonl, .json, .csv, .tsv or .parquet (or a datasets name)")
        kind = "json"
    utf16 = head.startswith(UTF16_BOMS)
    if not utf16 and _looks_binary(head):
        fail(name, "this does not look like a text file (binary data near the start)",
             "expected JSON Lines, JSON, CSV or Parquet; if it is UTF-16 text, save it as UTF-8")
    data = _utf16_to_utf8(path, name) if utf16 else None
    if kind in ("csv", "tsv"):  # the csv module handles every line ending itself
        return _read_csv(path, name, data, "\t" if kind == "tsv" else ",")
    if b"\r" in head and b"\n" not in head:  # classic Mac line endings: JSON Lines need \n
        data = (data if data is not None else path.read_bytes()).replace(b"\r", b"\n")
    start = (head if data is None else data[:8192]).lstrip(BOM + b" \t\r\n")[:1]
    if kind == "jsonl" and start != b"[":
        return _read_jsonl(path, name, data)
    if start == b"{" and _is_json_lines(io.BytesIO(data) if data is not None else path.open("rb")):
        return _read_jsonl(path, name, data)
    return _read_json(path, name, data)


def _looks_binary(head: bytes) -> bool:
    """NUL-heavy or mostly undecodable: not text. A stray NUL is left to the per-line check."""
    text = head.decode("utf-8", "replace")
    return head.count(0) > len(head) // 20 or text.count("\ufffd") > len(text) // 10


def _utf16_to_utf8(path: Path, name: str) -> bytes:
    try:
        return path.read_bytes().decode("utf-16").encode("utf-8")
    except UnicodeError as e:
        fail(name, f"starts with a UTF-16 byte order mark but is not valid UTF-16 ({e.reason})",
             "re-save the file as UTF-8")


def _is_json_lines(f) -> bool:
    """A .json file whose first line is a whole object and has more lines is JSON Lines."""
    with f:
        lines = (raw for raw in f if not raw.isspace())
        first = next(lines, b"").removeprefix(BOM).strip()
        return first.startswith(b"{") and first.endswith(b"}") and next(lines, None) is not None


def _read_jsonl(path: Path, name: str, data: bytes | None) -> Iterator[Row]:
    """One JSON object per physical line; a bad line is a row problem, the rest still load."""
    with io.BytesIO(data) if data is not None else path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            if raw.isspace():
                continue
            if raw.startswith(BOM):
                raw = raw[3:]  # BOM at file start, or where files were concatenated
            if b"\x00" in raw:
                yield lineno, Problem(name, lineno, None, "contains NUL bytes (binary data?); "
                                      "remove them or re-export the file as UTF-8 text")
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield lineno, Problem(name, lineno, None, f"not valid UTF-8 (byte 0x{raw[e.start]:02x}"
                                      f" at column {e.start + 1}); re-encode the file as UTF-8, "
                                      "e.g. iconv -f latin1 -t utf-8 IN > OUT")
                continue
            del raw  # free the bytes before parsing: one copy fewer of a huge line
            yield lineno, _parse_json(text, name, lineno)


def _parse_json(text: str, name: str, lineno: int) -> object:
    try:
        return json.loads(text)
    except RecursionError:
        return Problem(name, lineno, None, "invalid JSON (nested too deeply); flatten the row")
    except json.JSONDecodeError as e:
        return Problem(name, lineno, None, f"invalid JSON ({e.msg}: column {e.colno}); "
                       "fix the line, or pass --skip-invalid to drop it")
    except ValueError as e:  # e.g. an integer literal longer than Python's 4300-digit limit
        return Problem(name, lineno, None, f"invalid JSON ({str(e)[:80]}); fix the line")


def _read_json(path: Path, name: str, data: bytes | None) -> Iterator[Row]:
    """A JSON array of objects (or one object). Yields each element with the line it starts on."""
    raw = data if data is not None else path.read_bytes()
    # surrogateescape keeps bad bytes as lone surrogates; validate.py reports the rows holding them.
    text = raw.decode("utf-8", "surrogateescape").removeprefix("\ufeff")
    del raw
    start = _WS.match(text).end()
    if not text.startswith("[", start):
        try:
            doc = json.loads(text)
        except (ValueError, RecursionError) as e:
            _json_fail(name, e, 1, "if the file holds one object per line, name it .jsonl")
        lists = [v for v in doc.values() if isinstance(v, list)] if isinstance(doc, dict) else []
        if isinstance(doc, dict) and len(doc) == 1 and lists:
            yield from enumerate(lists[0], 1)  # {"data": [...]}: rows numbered by element
        else:
            yield 1, doc
        return
    dec, line, counted = json.JSONDecoder(), 1, 0
    i = _WS.match(text, start + 1).end()
    if text.startswith("]", i):
        i += 1
    else:
        while True:
            line += text.count("\n", counted, i)
            counted = i
            try:
                obj, i = dec.raw_decode(text, i)
            except (ValueError, RecursionError) as e:
                _json_fail(name, e, line, "a JSON array cannot be read past an error; fix it, or "
                           "convert the file to JSON Lines, where --skip-invalid drops bad lines")
            yield line, obj
            i = _WS.match(text, i).end()
            if text.startswith(",", i):
                i = _WS.match(text, i + 1).end()
            elif text.startswith("]", i):
                i += 1
                break
            else:
                got = repr(text[i]) if i < len(text) else "the end of the file"
                fail(name, f"invalid JSON (expected ',' or ']' after an element, got {got})",
                     "fix the array syntax", text.count("\n", 0, i) + 1)
    if _WS.match(text, i).end() != len(text):
        fail(name, "invalid JSON (extra text after the closing ']')", "remove it",
             text.count("\n", 0, i) + 1)


def _json_fail(name: str, e: Exception, line: int, fix: str) -> NoReturn:
    """Raise a file-level DataError for a JSON document that cannot be parsed at all."""
    if isinstance(e, RecursionError):
        fail(name, "invalid JSON (nested too deeply)", "flatten the data", line)
    if isinstance(e, json.JSONDecodeError):
        fail(name, f"invalid JSON ({e.msg}: column {e.colno})", fix, e.lineno)
    fail(name, f"invalid JSON ({str(e)[:80]})", fix, line)


def _read_csv(path: Path, name: str, data: bytes | None, delimiter: str) -> Iterator[Row]:
    """CSV/TSV with a header row (line 1). Rows are numbered by the line they start on."""
    raw = data if data is not None else path.read_bytes()
    text = raw.decode("utf-8", "surrogateescape").removeprefix("\ufeff")
    del raw
    # The default 128 KiB field limit would reject long outputs; the limit is process-wide.
    csv.field_size_limit(max(csv.field_size_limit(), min(sys.maxsize, 2**31 - 1)))
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader, None)
        if not header:
            fail(name, "no header row on line 1", "the first line must name the columns", 1)
        header = [h.strip() for h in header]
        dupes = sorted({h for h in header if h and header.count(h) > 1})
        if dupes:
            fail(name, f"duplicate column name(s) in the header: {', '.join(dupes)}",
                 "give every column a unique name", 1)
        prev = reader.line_num
        for fields in reader:
            start, prev = prev + 1, reader.line_num
            if not fields or fields == [""]:
                continue  # blank line
            if len(fields) != len(header):
                yield start, Problem(name, start, None, f"row has {len(fields)} field(s) but the "
                                     f"header has {len(header)}; check quoting and delimiters")
                continue
            yield start, {h: v for h, v in zip(header, fields, strict=True) if h}
    except csv.Error as e:
        fail(name, f"unreadable CSV ({e})", "check quoting", reader.line_num)


def _read_parquet(path: Path, name: str) -> Iterator[Row]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        row = 0
        for batch in pf.iter_batches(batch_size=8192):
            for rec in batch.to_pylist():
                row += 1
                yield row, rec
    except Exception as e:  # pyarrow raises many types for corrupt files; none may escape raw
        fail(name, f"not a readable Parquet file ({type(e).__name__}: {str(e)[:120]})",
             "check the file was fully written, or export it as JSONL")
