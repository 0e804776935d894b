"""`audit` piped to a file: no line padded with trailing spaces, no sentence split across lines
(a terminal still gets rich's wrapping at its width)."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest
from rich.console import Console

from instruct_tune.audit.render import render
from instruct_tune.audit.report import audit
from instruct_tune.cli import main
from tests.audit.synth import Synth


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Synthetic rows plus a few with findings (an echo, a leaked marker, a duplicate prompt)."""
    recs = Synth(1).records(120)
    rows = [{"instruction": r.instruction, "input": r.input, "output": r.output} for r in recs]
    rows += [{"instruction": "Say hi!", "output": "say HI!"},
             {"instruction": "Say bye", "output": "bye</s>"},
             {"instruction": rows[0]["instruction"], "input": rows[0]["input"], "output": "Other."}]
    path = tmp_path_factory.mktemp("plain") / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def texts(report: dict) -> list[str]:
    """Every sentence-bearing text of the JSON report: verdicts, finding messages and advice."""
    out = []
    for lever in report.values():
        if isinstance(lever, dict) and "verdict" in lever:
            out.append(lever["verdict"])
            out += [t for f in lever["findings"] for t in (f["message"], f["advice"]) if t]
    return out


def test_piped_to_a_file_nothing_is_padded_or_wrapped(data, tmp_path, capsys):
    assert main(["audit", str(data), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    out = tmp_path / "audit.txt"
    with open(out, "w") as f:  # a real file, as `instruct-tune audit d.jsonl > audit.txt`
        subprocess.run([sys.executable, "-m", "instruct_tune.cli", "audit", str(data)], stdout=f,
                       stderr=subprocess.DEVNULL, check=True, timeout=120)
    lines = out.read_text().splitlines()
    assert lines and not [line for line in lines if line != line.rstrip()]
    wanted = texts(report)
    assert len(wanted) > 10 and max(map(len, wanted)) > 100  # long enough to have been wrapped
    split = [t for t in wanted if not any(t in line for line in lines)]
    assert not split, f"not on one line: {split}"


def test_a_terminal_still_wraps_at_its_width(data):
    from instruct_tune.data.load import load_records

    report = audit(load_records(data))
    buf = io.StringIO()
    render(report, Console(file=buf, force_terminal=True, width=70, color_system=None))
    lines = buf.getvalue().splitlines()
    assert max(map(len, lines)) <= 70
    assert any(len(f.advice) > 70 for f in report.findings)  # so some advice was wrapped
