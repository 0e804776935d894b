"""`curate`: planted defects are dropped with the right reason and the row they refer to, the
output keeps each input format's rows as they were, runs are deterministic, files are safe."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from instruct_tune.audit.curate import CurateOptions, curate_files, select_rows
from instruct_tune.cli import main
from instruct_tune.data.load import load_records
from instruct_tune.data.records import Message, Record, Source
from instruct_tune.errors import ConfigError, InstructTuneError
from tests.audit.synth import Synth

EXPECTED = {"duplicate": "duplicate_rows", "conflict": "conflicting_outputs",
            "empty": "invalid",  # the loader already rejects empty outputs "echo": "echoes_instruction", "copy_input": "copies_input",
            "marker": "template_marker_in_output", "refusal": "refusal_boilerplate"}


def alpaca_row(r: Record, line: int) -> dict:
    return {"task": f"t{line % 4}", "instruction": r.instruction, "input": r.input,
            "output": r.output, "id": line}


def write_jsonl(path, rows) -> str:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return str(path)


def read_jsonl(path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def planted_run(planted, tmp_path_factory):
    """The planted set as a file (with extra fields), an eval set holding two of its prompts
    (re-cased), curated once with the defaults."""
    d = tmp_path_factory.mktemp("curate")
    rows = [alpaca_row(r, r.source.line) for r in planted.records]
    data = write_jsonl(d / "planted.jsonl", rows)
    used = set().union(*planted.lines.values())
    free = [r for r in planted.records[:100] if r.source.line not in used]
    leaked = free[:2]  # the same prompt, re-cased and re-spaced; then one word added
    near = next(r for r in free[2:] if len(r.instruction.split()) >= 14 and not r.input)
    ev = write_jsonl(d / "eval.jsonl", [{"instruction": "  " + r.instruction.upper(),
                                         "input": r.input, "output": "x"} for r in leaked]
                     + [{"instruction": near.instruction + " thanks", "output": "y"}]
                     + [alpaca_row(r, 0) for r in Synth(11).records(5)])
    leaked.append(near)
    report = curate_files([data], str(d / "clean.jsonl"), eval_data=ev)
    return report, data, rows, [r.source.line for r in leaked], d


def drops_by_line(report) -> dict[int, dict]:
    return {x["line"]: x for x in report.manifest["dropped"]}


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_planted_defects_dropped_with_their_reason(planted_run, planted, kind):
    report = planted_run[0]
    drops = drops_by_line(report)
    lines = planted.lines[kind]
    missing = sorted(line for line in lines if line not in drops)
    assert not missing, f"{kind}: planted lines kept: {missing}"
    wrong = {line: drops[line]["reason"] for line in lines if drops[line]["reason"] != EXPECTED[kind]}
    assert not wrong, f"{kind}: dropped for another reason: {wrong}"


def test_curate_drops_what_the_audit_reports(planted):
    """One computation: for every check, the rows curate drops for it are rows the audit lists
    under the same code, and every row the audit lists is dropped (for it or an earlier reason)."""
    from instruct_tune.audit.report import audit

    report = audit(planted.records)
    sel = select_rows(planted.records)
    dropped = {x.source.line: x.reason for x in sel.drops}
    for code in ("empty_output", "template_marker_in_output", "echoes_instruction",
                 "copies_input", "refusal_boilerplate", "cut_off_output", "conflicting_outputs",
                 "duplicate_rows"):
        flagged = {s.line for s in report.find(code).rows}
        assert {line for line, r in dropped.items() if r == code} <= flagged, code
        assert flagged <= set(dropped), code
    # Outputs that merely end without punctuation (info: often informal writing) are kept.
    weak = {s.line for s in report.find("unterminated_output").rows}
    assert weak and not weak & set(dropped)
    assert planted.lines["cut"] - weak <= {line for line, r in dropped.items() if r == "cut_off_output"}


def test_duplicates_point_at_the_kept_first_copy(planted_run, planted):
    report, _, rows, _, _ = planted_run
    drops = drops_by_line(report)
    for line in planted.lines["duplicate"]:
        other = drops[line]["other"]
        assert other["kept"] and other["line"] < line
        a, b = rows[line - 1], rows[other["line"] - 1]
        assert (a["instruction"], a["input"], a["output"]) == (b["instruction"], b["input"], b["output"])
        assert other["line"] not in drops


def test_conflicts_drop_every_answer_and_name_the_other(planted_run, planted):
    report, _, rows, _, _ = planted_run
    drops = drops_by_line(report)
    for line in planted.lines["conflict"]:
        other = drops[line]["other"]
        assert not other["kept"] and other["line"] in planted.lines["conflict"]
        a, b = rows[line - 1], rows[other["line"] - 1]
        assert a["instruction"] == b["instruction"] and a["output"] != b["output"]


def test_contaminated_rows_name_the_eval_row(planted_run):
    report, _, _, leaked, _ = planted_run
    drops = drops_by_line(report)
    for k, line in enumerate(leaked, 1):
        assert drops[line]["reason"] == "contaminated"
        assert drops[line]["other"]["line"] == k and drops[line]["other"]["path"].endswith("eval.jsonl")
    assert "near-duplicate prompt" in drops[leaked[-1]]["detail"]


def test_clean_rows_are_kept_as_written(planted_run, planted):
    report, _, rows, leaked, _ = planted_run
    out = read_jsonl(report.out)
    dropped = set(drops_by_line(report))
    allowed = set().union(*planted.lines.values()) | set(leaked)
    assert dropped <= allowed  # nothing clean is dropped (near-duplicates are kept by default)
    assert out == [row for row in rows if row["id"] not in dropped]  # order, fields, values
    assert report.manifest["rows_written"] == len(out) == len(rows) - len(dropped)
    assert report.manifest["near_duplicates"]["groups"] >= len(planted.lines["near"]) // 2


def test_audit_strict_passes_on_the_output_only(planted_run, capsys):
    report, data, _, _, d = planted_run
    assert main(["audit", data, "--strict", "--json"]) == 1
    assert main(["audit", report.out, "--strict", "--json", "--eval-data", str(d / "eval.jsonl")]) == 0
    out = json.loads(capsys.readouterr().out.splitlines()[-1])
    quality = {f["code"] for f in out["output_quality"]["findings"]}
    assert not quality & set(EXPECTED.values())
    assert not out["contamination"]["findings"]


def test_max_near_duplicates_keeps_k_per_group(planted):
    sel = select_rows(planted.records, options=CurateOptions(max_near_duplicates=1))
    near = [x for x in sel.drops if x.reason == "near_duplicate_instructions"]
    originals = sorted(planted.lines["near"])[:6]  # the earlier half of each planted pair
    assert {x.source.line for x in near} >= set(sorted(planted.lines["near"])[6:])
    assert all(x.other.line in originals and x.other_kept for x in near)
    assert sel.near["dropped"] == len(near)


def test_keep_flags_and_keep_first(planted):
    sel = select_rows(planted.records, options=CurateOptions(
        keep=frozenset({"empty_output", "duplicate_rows"}), conflicts="keep-first"))
    dropped = {x.source.line: x for x in sel.drops}
    assert not planted.lines["empty"] & set(dropped)
    assert not planted.lines["duplicate"] & set(dropped)
    first = {min(g) for g in _conflict_pairs(planted)}
    for line in planted.lines["conflict"] - first:
        assert dropped[line].reason == "conflicting_outputs" and dropped[line].other_kept
        assert dropped[line].other.line in first
    assert not first & set(dropped)


def _conflict_pairs(planted) -> list[tuple[int, int]]:
    by_prompt: dict[str, list[int]] = {}
    for r in planted.records:
        if r.source.line in planted.lines["conflict"]:
            by_prompt.setdefault(r.instruction, []).append(r.source.line)
    return [tuple(v) for v in by_prompt.values()]


def test_unknown_keep_reason_is_refused():
    with pytest.raises(ConfigError, match="unknown reason"):
        CurateOptions(keep=frozenset({"emptyy"}))


# Formats: the output rows are the input rows, as they were (fields, names, key order).
def _rows(fmt: str) -> list[dict]:
    syn = Synth(4)
    recs = syn.records(6)
    if fmt == "alpaca":
        rows = [{"output": r.output, "instruction": r.instruction, "task": "qa", "n": k}
                for k, r in enumerate(recs)]
        bad = {"instruction": "Say it", "output": "<|im_start|>assistant hi", "task": "qa", "n": 9}
    elif fmt == "prompt_completion":
        rows = [{"prompt": r.instruction, "completion": r.output, "source": "syn"} for r in recs]
        bad = {"prompt": recs[0].instruction, "completion": recs[0].output, "source": "syn"}
    else:
        rows = [{"messages": [{"role": "system", "content": "Be brief."},
                              {"role": "user", "content": r.instruction},
                              {"role": "assistant", "content": r.output}], "task": "chat"}
                for r in recs]
        bad = {"messages": [{"role": "user", "content": "Hello"},
                            {"role": "assistant", "content": ""}], "task": "chat"}
    return rows[:3] + [bad] + rows[3:]


@pytest.mark.parametrize("fmt", ["alpaca", "prompt_completion", "chat"])
def test_each_format_is_written_back_unchanged(tmp_path, fmt):
    rows = _rows(fmt)
    data = write_jsonl(tmp_path / "in.jsonl", rows)
    report = curate_files([data], str(tmp_path / "out.jsonl"))
    assert [x["line"] for x in report.manifest["dropped"]] == [4]
    out = read_jsonl(report.out)
    assert out == rows[:3] + rows[4:]
    assert [list(r) for r in out] == [list(r) for r in rows[:3] + rows[4:]]  # key order
    assert report.manifest["sources"][0]["format"] == fmt
    assert load_records(report.out)[0].meta == load_records(data, skip_invalid=True)[0].meta


def test_csv_input_keeps_its_columns(tmp_path):
    recs = Synth(5).records(4)
    path = tmp_path / "in.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["question", "answer", "topic"])
        for r in recs + recs[:1]:
            w.writerow([r.instruction, r.output, "x"])
    report = curate_files([str(path)], str(tmp_path / "out.jsonl"),
                          columns="instruction=question,output=answer")
    out = read_jsonl(report.out)
    assert out == [{"question": r.instruction, "answer": r.output, "topic": "x"} for r in recs]
    assert report.manifest["dropped"][0] | {"other": None} == {
        "path": str(path), "line": 6, "reason": "duplicate_rows", "detail": "same prompt and output",
        "other": None}


def test_deterministic(planted_run):
    _, data, _, _, d = planted_run
    a = curate_files([data], str(d / "a.jsonl"), max_length=64, rows=500, seed=3)
    b = curate_files([data], str(d / "b.jsonl"), max_length=64, rows=500, seed=3)
    assert Path(a.out).read_bytes() == Path(b.out).read_bytes()
    strip = lambda m: {k: v for k, v in m.items() if k != "out"}  # noqa: E731
    assert strip(a.manifest) == strip(b.manifest)


def test_dedup_across_files(tmp_path):
    recs = Synth(6).records(8)
    a = write_jsonl(tmp_path / "a.jsonl", [alpaca_row(r, k) for k, r in enumerate(recs[:5])])
    b = write_jsonl(tmp_path / "b.jsonl", [alpaca_row(r, k) for k, r in enumerate(recs[3:], 3)])
    report = curate_files([a, b], str(tmp_path / "out.jsonl"))
    drops = report.manifest["dropped"]
    assert [(x["path"], x["line"]) for x in drops] == [(b, 1), (b, 2)]
    assert [(x["other"]["path"], x["other"]["line"], x["other"]["kept"]) for x in drops] == [
        (a, 4, True), (a, 5, True)]
    assert [s["written"] for s in report.manifest["sources"]] == [5, 3]
    assert [r["id"] for r in read_jsonl(report.out)] == [0, 1, 2, 3, 4, 5, 6, 7]


def test_mix_shares_and_upsampling(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [alpaca_row(r, k) for k, r in enumerate(Synth(7).records(40))])
    b = write_jsonl(tmp_path / "b.jsonl", [alpaca_row(r, k) for k, r in enumerate(Synth(8).records(5))])
    report = curate_files([], str(tmp_path / "m.jsonl"), mix=f"{a}=0.75,{b}=0.25", rows=40, seed=1)
    src = report.manifest["sources"]
    assert [s["written"] for s in src] == [30, 10]
    assert src[0]["upsampled"] == 0 and src[1]["upsampled"] == 5
    out = read_jsonl(report.out)
    assert len(out) == 40 and len({json.dumps(r) for r in out[:30]}) == 30  # a: no repeats
    assert "up-sampled" in report.manifest["mix"]["parts"][1]
    # Without --rows: the largest mix that repeats nothing (b's 5 rows are a quarter of 20).
    report = curate_files([], str(tmp_path / "n.jsonl"), mix=f"{a}=3,{b}=1")
    assert [s["written"] for s in report.manifest["sources"]] == [15, 5]
    assert any("normalized" in n for n in report.notes)


# Output safety: checked before anything loads, and an input is never written.
def test_out_safety(tmp_path):
    data = write_jsonl(tmp_path / "in.jsonl", [alpaca_row(r, k) for k, r in enumerate(Synth(9).records(4))])
    before = Path(data).read_bytes()
    with pytest.raises(ConfigError, match="never writes into its input"):
        curate_files([data], data, overwrite=True)
    with pytest.raises(ConfigError, match="writes JSON Lines"):
        curate_files([data], str(tmp_path / "x.csv"))
    with pytest.raises(ConfigError, match="inside the input directory"):
        curate_files([str(tmp_path)], str(tmp_path / "o.jsonl"))
    first = curate_files([data], str(tmp_path / "o.jsonl"))
    with pytest.raises(ConfigError, match="already exists; pass --overwrite"):
        curate_files([data], first.out)
    curate_files([data], first.out, overwrite=True)
    assert Path(data).read_bytes() == before
    assert curate_files([data], str(tmp_path / "new" / "dir" / "o.jsonl")).manifest["rows_written"] == 4


def test_cli_summary_and_errors(tmp_path, capsys, planted_run):
    _, data, _, _, _ = planted_run
    out = str(tmp_path / "c.jsonl")
    assert main(["curate", data, "--out", out, "--max-near-duplicates", "1"]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert lines[1] == "reason\trows\tshare\twhat\tkeep with"
    table = {ln.split("\t")[0]: int(ln.split("\t")[1]) for ln in lines[2:] if "\t" in ln}
    manifest = json.loads(Path(out + ".manifest.json").read_text())
    assert table == manifest["summary"] and table["near_duplicate_instructions"] >= 6
    assert all(len(ln) == len(ln.rstrip()) and "  " not in ln for ln in lines[1:])  # no padding

    assert main(["curate", data, "--out", out]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["curate", "--mix", f"{data}=0.7,{data}x=abc", "--out", str(tmp_path / "d.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "entry 2" in err and "not a number" in err and "PATH=SHARE" in err
    assert main(["curate", "--out", str(tmp_path / "e.jsonl")]) == 2
    assert "needs data" in capsys.readouterr().err


def test_too_long_rows_dropped_with_the_model_tokenizer(tmp_path, get_tokenizer_llama):
    from instruct_tune.data.tokenize import build_example

    recs = [Record(r.messages, Source("x.jsonl", k + 1)) for k, r in enumerate(Synth(12).records(40))]
    sel = select_rows(recs, tokenizer=get_tokenizer_llama, template="alpaca", max_length=200)
    long = {x.source.line for x in sel.drops if x.reason == "too_long"}
    lengths = {r.source.line: len(build_example(r, get_tokenizer_llama, "alpaca", 10**6).input_ids)
               for r in recs}
    assert long == {line for line, n in lengths.items() if n > 200} and long  # some, not all
    assert len(long) < len(recs)


def test_no_rows_left_to_sample_is_an_error(tmp_path):
    data = write_jsonl(tmp_path / "in.jsonl", [{"instruction": "a b c", "output": "a b c"}])
    with pytest.raises(InstructTuneError):
        curate_files([data], str(tmp_path / "o.jsonl"), rows=3)


def test_chats_that_only_open_alike_are_not_conflicts():
    def chat(q: str, a: str, line: int) -> Record:
        return Record((Message("user", "Hi!"), Message("assistant", "Hello! How can I help?"),
                       Message("user", q), Message("assistant", a)), Source("c.jsonl", line))

    recs = [chat("What is 2+2?", "4.", 1), chat("Name a colour.", "Blue.", 2),
            chat("What is 2+2?", "Five.", 3), chat("what is 2+2?", "4.", 4)]
    sel = select_rows(recs)
    assert {x.source.line: x.reason for x in sel.drops} == {
        1: "conflicting_outputs", 3: "conflicting_outputs", 4: "conflicting_outputs"}
    sel = select_rows(recs, options=CurateOptions(conflicts="keep-first"))
    assert {x.source.line: (x.reason, x.other.line) for x in sel.drops} == {
        3: ("conflicting_outputs", 1), 4: ("duplicate_rows", 1)}


def test_yaml_data_list_for_curate(tmp_path, capsys):
    from instruct_tune.cli import parse

    recs = Synth(13).records(4)
    a = write_jsonl(tmp_path / "a.jsonl", [alpaca_row(r, k) for k, r in enumerate(recs)])
    b = write_jsonl(tmp_path / "b.jsonl", [alpaca_row(r, k) for k, r in enumerate(recs[:2])])
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(f"data: [{a}, {b}]\nout: {tmp_path / 'o.jsonl'}\n")
    assert main(["curate", "--config", str(cfg_file)]) == 0
    assert json.loads((tmp_path / "o.jsonl.manifest.json").read_text())["summary"] == {
        "duplicate_rows": 2}
    cfg_file.write_text(f"data: {{{a}: 3, {b}: 1}}\nout: x.jsonl\n")
    assert parse("curate", ["--config", str(cfg_file)]).data == (f"{a}=3,{b}=1",)


@pytest.mark.parametrize("fmt", ["alpaca", "prompt_completion", "chat", "auto"])
@pytest.mark.parametrize("with_chat", [False, True])
def test_rows_rebuilt_for_sources_without_a_file_load_back_the_same(tmp_path, fmt, with_chat):
    """A datasets name has no file to copy rows from: they are rebuilt from the records, all in
    one format (chat messages when some record does not fit the one asked for)."""
    from instruct_tune.data.raw import original_rows

    recs = [Record(r.messages, Source("owner/dataset", k + 1), {"task": "t", "k": k})
            for k, r in enumerate(Synth(14).records(6))]
    if with_chat:
        recs.append(Record((Message("system", "Be brief."), Message("user", "Hi"),
                            Message("assistant", "Hello.")), Source("owner/dataset", 7), {"k": 9}))
    rows = original_rows(recs, fmt)
    fields = {"instruction", "output", "prompt", "completion", "messages"}
    assert len({frozenset(r) & fields for r in rows}) == 1  # one format
    back = load_records(write_jsonl(tmp_path / "r.jsonl", rows))
    for r, b in zip(recs, back, strict=True):
        assert b.meta == r.meta and b.output == r.output
        assert b.messages == r.messages or (  # an input folded into the user turn
            "messages" in rows[0] and b.instruction == f"{r.instruction}\n\n{r.input}")


def test_sources_of_different_formats_are_written_as_chat(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", _rows("alpaca"))
    b = write_jsonl(tmp_path / "b.jsonl", _rows("chat"))
    report = curate_files([a, b], str(tmp_path / "o.jsonl"))
    out = read_jsonl(report.out)
    assert all(set(r) >= {"messages", "task"} for r in out)
    assert len(load_records(report.out)) == len(out) == 12
    assert any("different formats" in n for n in report.notes)
