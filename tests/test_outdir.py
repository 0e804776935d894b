"""The one output-directory guard (instruct_tune/outdir.py, outdir_lock.py), through the real CLI.

Every command that writes a directory (train --out, demo --out, export --to) meets every kind of
target. A refusal must come from preflight: the command's run() (where models load) is replaced by
a stub that fails the test if called, and whatever was in the target must still be there. Where
the guard lets a command through, the stub checks that the command holds the directory's lock.
Last, two real `train` processes started together into one --out: exactly one runs.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from instruct_tune import cli, outdir
from instruct_tune.errors import ConfigError
from instruct_tune.outdir_lock import LOCK, claim, release

COMMANDS = ("train", "demo", "export")
FLAG = {"train": "--out", "demo": "--out", "export": "--to"}
# What each command left in a directory it wrote (plus the marker, unless written by an old version).
WRITTEN = {"train": {"config.yaml": "seed: 0\n", "metrics.jsonl": '{"step": 1}\n'},
           "demo": {"report.json": "{}\n", "data/train.jsonl": "{}\n"},
           "export": {"config.json": "{}\n", "template.json": "{}\n"}}


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fake HOME holding a file in a sub-folder (what `export --to ~ --overwrite` deleted)."""
    home = tmp_path / "home"
    (home / "sub").mkdir(parents=True)
    (home / "sub" / "notes.txt").write_text("precious")
    monkeypatch.setenv("HOME", str(home))
    return home


@pytest.fixture
def cli_run(tmp_path, home, monkeypatch, capsys):
    """cli_run(command, target, *flags) -> (exit code, stderr, whether run() was reached)."""
    data = tmp_path / "d.jsonl"
    data.write_text('{"instruction": "a", "output": "b"}\n')
    model = tmp_path / "model"  # never loaded: preflight decides before
    model.mkdir()

    def call(command: str, target, *flags: str) -> tuple[int, str, bool]:
        reached = []

        def stub(cfg):
            out = Path(getattr(cfg, "to", None) or cfg.out)
            holder = json.loads((out / LOCK).read_text())  # the command holds its directory
            assert holder["pid"] == os.getpid(), holder
            reached.append(out)
            release(out)
            return 0

        module = __import__(f"instruct_tune.commands.{command}", fromlist=["run"])
        monkeypatch.setattr(module, "run", stub)
        argv = {"train": ["train", "--model", model, "--data", data, "--out", target],
                "demo": ["demo", "--out", target],
                "export": ["export", model, "--to", target]}[command]
        code = cli.main([str(a) for a in [*argv, *flags]])
        err = capsys.readouterr().err
        assert "Traceback" not in err
        return code, err, bool(reached)
    return call


def written_by(command: str, path: Path, marker: bool = True) -> Path:
    for name, text in WRITTEN[command].items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    if marker:
        layout = {"train": outdir.TRAIN, "demo": outdir.DEMO, "export": outdir.EXPORT}[command]
        outdir.mark(path, layout, entries=list(WRITTEN[command]) if command == "export" else None)
    return path


def refused(result, *words: str) -> None:
    code, err, reached = result
    assert code == 2 and not reached, err
    for w in words:
        assert w.lower() in err.lower(), f"{w!r} not in: {err}"


def lock_for(path: Path, pid: int, command: str = "instruct-tune train") -> None:
    (path / LOCK).write_text(json.dumps({"pid": pid, "host": socket.gethostname(),
                                         "started": time.time() - 60, "command": command}))


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.fixture
def live_pid():
    p = subprocess.Popen(["sleep", "120"])
    yield p.pid
    p.kill()
    p.wait()


# ---------------------------------------------------------------------------------------------
# Places --overwrite never replaces


@pytest.mark.parametrize("command", COMMANDS)
def test_home_directory(command, cli_run, home):
    refused(cli_run(command, home, "--overwrite"), "home directory")
    assert (home / "sub" / "notes.txt").read_text() == "precious"


@pytest.mark.parametrize("command", COMMANDS)
def test_home_directory_written_by_us_is_still_refused(command, cli_run, home):
    (home / "sub" / "notes.txt").unlink()
    (home / "sub").rmdir()
    written_by(command, home)  # even a home that looks exactly like our output
    refused(cli_run(command, home, "--overwrite"), "home directory")
    assert (home / outdir.MARKER).is_file()


@pytest.mark.parametrize("command", COMMANDS)
def test_working_directory_and_its_parent(command, cli_run, tmp_path, monkeypatch):
    work = written_by(command, tmp_path / "work")
    (work / "sub").mkdir()
    monkeypatch.chdir(work)
    refused(cli_run(command, ".", "--overwrite"), "it is the working directory")
    monkeypatch.chdir(work / "sub")
    refused(cli_run(command, "..", "--overwrite"), "holds the working directory")
    assert (work / "sub").is_dir() and (work / outdir.MARKER).is_file()


@pytest.mark.parametrize("command", COMMANDS)
def test_git_work_tree(command, cli_run, tmp_path):
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "README.md").write_text("mine")
    refused(cli_run(command, repo, "--overwrite"), "git work tree")
    assert (repo / "README.md").read_text() == "mine"
    if command != "export":  # one of ours holding a work tree below (final/ made a repo to push)
        ours = written_by(command, tmp_path / "ours")
        sub = ours / ("data" if command == "demo" else "final")
        (sub / ".git").mkdir(parents=True)
        refused(cli_run(command, ours, "--overwrite"), "git work tree", str(sub))


@pytest.mark.parametrize("command", COMMANDS)
def test_foreign_entries_are_named(command, cli_run, tmp_path):
    target = tmp_path / "target"
    (target / "src").mkdir(parents=True)
    (target / "notes.txt").write_text("mine")
    refused(cli_run(command, target, "--overwrite"),
            "holds 2 entries this tool did not write: notes.txt, src/")
    refused(cli_run(command, target), "not empty", "notes.txt")  # no flag: same reason given
    # Our own output with one foreign file added is refused for that file.
    ours = written_by(command, tmp_path / "ours")
    (ours / "todo.md").write_text("mine")
    refused(cli_run(command, ours, "--overwrite"), "1 entry this tool did not write: todo.md")
    assert (target / "notes.txt").is_file() and (ours / "todo.md").is_file()


@pytest.mark.parametrize("command", COMMANDS)
def test_another_commands_output(command, cli_run, tmp_path):
    other = "export" if command == "train" else "train"
    theirs = written_by(other, tmp_path / "theirs")
    refused(cli_run(command, theirs, "--overwrite"), f"instruct-tune {other} output")


def test_export_may_not_overlap_its_model(cli_run, tmp_path):
    refused(cli_run("export", tmp_path / "model", "--overwrite"), "overlaps the model directory")
    refused(cli_run("export", tmp_path / "model" / "sub"), "overlaps the model directory")


# ---------------------------------------------------------------------------------------------
# What --overwrite does replace


@pytest.mark.parametrize("marker", [True, False], ids=["marked", "older-version"])
@pytest.mark.parametrize("command", COMMANDS)
def test_our_own_output_is_replaceable(command, marker, cli_run, tmp_path):
    ours = written_by(command, tmp_path / "ours", marker=marker)
    code, err, reached = cli_run(command, ours)
    assert code == 2 and not reached and "--overwrite" in err, err  # not without the flag
    code, err, reached = cli_run(command, ours, "--overwrite")
    assert code == 0 and reached, err
    assert not (ours / LOCK).exists()  # released


@pytest.mark.parametrize("command", COMMANDS)
def test_new_directory_is_created_and_claimed(command, cli_run, tmp_path):
    code, err, reached = cli_run(command, tmp_path / "a" / "b")
    assert code == 0 and reached, err
    assert not (tmp_path / "a").exists()  # claimed, nothing written, released: nothing left


def test_overwrite_clears_everything_but_marker_and_lock_and_never_follows_links(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    run = written_by("train", tmp_path / "run")
    (run / "final").symlink_to(outside)
    outdir.guard(run, outdir.TRAIN, overwrite=True)
    outdir.prepare(run, outdir.TRAIN, overwrite=True)
    assert sorted(p.name for p in run.iterdir()) == sorted([outdir.MARKER, LOCK])
    assert (outside / "keep.txt").read_text() == "mine"
    release(run)


def test_a_data_folder_alone_is_not_an_old_demo_output(tmp_path):
    """data/ is too common a name: an unmarked directory holding only data/ with other files
    is not taken for a demo output of an older version."""
    d = tmp_path / "d"
    (d / "data").mkdir(parents=True)
    (d / "data" / "corpus.jsonl").write_text("{}\n")
    with pytest.raises(ConfigError, match="did not write: data/"):
        outdir.check(d, outdir.DEMO, overwrite=True)


# ---------------------------------------------------------------------------------------------
# The lock: one run per directory


@pytest.mark.parametrize("command", COMMANDS)
def test_live_lock_is_refused_even_with_overwrite(command, cli_run, tmp_path, live_pid):
    ours = written_by(command, tmp_path / "ours")
    lock_for(ours, live_pid)
    for flags in ([], ["--overwrite"]):
        refused(cli_run(command, ours, *flags), f"in use by PID {live_pid} since",
                "started by `instruct-tune train`", f"choose another {FLAG[command]}")
    assert json.loads((ours / LOCK).read_text())["pid"] == live_pid  # untouched
    fresh = tmp_path / "fresh"  # a run that has claimed a new directory but written nothing yet
    fresh.mkdir()
    lock_for(fresh, live_pid)
    refused(cli_run(command, fresh), f"in use by PID {live_pid}")


@pytest.mark.parametrize("command", COMMANDS)
def test_stale_lock_is_taken_over(command, cli_run, tmp_path):
    ours = written_by(command, tmp_path / "ours")
    pid = dead_pid()
    lock_for(ours, pid)
    code, err, reached = cli_run(command, ours, "--overwrite")
    assert code == 0 and reached, err
    assert f"PID {pid}" in err and "no longer running; taking it over" in err


def test_a_reused_pid_or_an_unwritten_old_lock_is_stale(tmp_path, live_pid):
    a = tmp_path / "a"
    a.mkdir()
    info = {"pid": live_pid, "host": socket.gethostname(), "started": 0.0,
            "command": "instruct-tune train", "proc_start": "1"}  # not when live_pid started
    (a / LOCK).write_text(json.dumps(info))
    claim(a, "instruct-tune train")
    assert json.loads((a / LOCK).read_text())["pid"] == os.getpid()
    release(a)
    b = tmp_path / "b"
    b.mkdir()
    (b / LOCK).write_text("")  # its holder died between creating and writing it
    os.utime(b / LOCK, (time.time() - 60, time.time() - 60))
    claim(b, "instruct-tune train")
    assert json.loads((b / LOCK).read_text())["pid"] == os.getpid()
    release(b)


def test_lock_on_another_host_is_refused_with_the_way_out(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / LOCK).write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": time.time(),
                                      "command": "instruct-tune train"}))
    with pytest.raises(ConfigError, match=r"on host elsewhere.*delete .*\.instruct-tune\.lock"):
        outdir.guard(d, outdir.TRAIN)


def test_only_the_main_distributed_process_claims(tmp_path, monkeypatch, live_pid):
    d = tmp_path / "d"
    d.mkdir()
    lock_for(d, live_pid)  # what rank 0 holds
    monkeypatch.setenv("RANK", "1")
    outdir.guard(d, outdir.TRAIN)  # rank 1 neither refuses nor claims
    assert json.loads((d / LOCK).read_text())["pid"] == live_pid


def _claim_in_child(out: str, barrier, results) -> None:
    barrier.wait()  # all claim at once
    try:
        claim(Path(out), "instruct-tune train")
        results.put(("ok", os.getpid()))
    except ConfigError as e:
        results.put(("refused", str(e)))
    barrier.wait()  # every claimant has tried before any winner exits


@pytest.mark.parametrize("stale", [False, True], ids=["new", "stale-lock"])
def test_racing_claims_have_one_winner(tmp_path, stale):
    import multiprocessing as mp

    out = tmp_path / "out"
    if stale:
        out.mkdir()
        lock_for(out, dead_pid())
    ctx = mp.get_context("fork")
    n = 6
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_claim_in_child, args=(str(out), barrier, results))
             for _ in range(n)]
    for p in procs:
        p.start()
    got = [results.get(timeout=60) for _ in range(n)]
    for p in procs:
        p.join(timeout=60)
    winners = [pid for kind, pid in got if kind == "ok"]
    assert len(winners) == 1, got
    assert all(f"in use by PID {winners[0]}" in msg for kind, msg in got if kind == "refused"), got


# ---------------------------------------------------------------------------------------------
# Two real `train` processes into one --out


def test_two_train_runs_into_one_out(model_dirs, tmp_path):
    from tests.train.conftest import metrics, write_alpaca

    data = write_alpaca(tmp_path / "train.jsonl", 40)
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "instruct_tune.cli", "train", "--model",
            str(model_dirs["llama"]), "--data", str(data), "--out", str(out), "--cache-dir",
            "none", "--quiet", "--max-steps", "40", "--batch-size", "2", "--save-every", "0",
            "--log-every", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    procs = [subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, start_new_session=True) for _ in range(2)]
    try:
        started = time.monotonic()
        while all(p.poll() is None for p in procs) and time.monotonic() - started < 120:
            time.sleep(0.05)
        first = next(p for p in procs if p.poll() is not None)
        other = procs[1 - procs.index(first)]
        refused_after = time.monotonic() - started
        _, err = first.communicate()
        assert first.returncode == 2, err
        assert f"is in use by PID {other.pid} since" in err, err
        assert other.poll() is None  # refused while the first one runs
        _, other_err = other.communicate(timeout=300)
        assert other.returncode == 0, other_err[-2000:]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    assert [r["step"] for r in metrics(out)] == list(range(1, 41))  # one run's steps, once
    assert not (out / LOCK).exists()
    assert json.loads((out / outdir.MARKER).read_text())["command"] == "train"
    print(f"second run refused after {refused_after:.1f}s")
