"""Who is writing an output directory right now: a lock file, DIR/.instruct-tune.lock.

A run claims its directory before anything heavy loads, by creating the lock file atomically
(O_CREAT|O_EXCL, so of two runs started together exactly one wins). The lock holds the PID, the
host, the process start time and the command. A second run is refused while the holder lives; a
lock whose holder is gone (a dead PID on this host, or one reused by another process) is stale
and taken over with a note. The holder releases it at the end, and at exit (atexit) if it did not;
a process that is killed leaves a dead PID, which is stale anyway.

A process may claim the same directory again (the CLI's preflight, then the library function).
Under torchrun/accelerate only the main process (RANK, else LOCAL_RANK, 0 or unset) claims.
Cheap to import: no torch.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

LOCK = ".instruct-tune.lock"
_UNWRITTEN_GRACE_S = 10  # an empty lock younger than this is being written by its holder
_HELD: dict[Path, list[Path]] = {}  # directory we hold -> directories the claim created


@dataclass(frozen=True)
class Holder:
    """What a lock file says about the run holding it."""

    pid: int
    host: str
    started: float  # time.time()
    command: str
    proc_start: str | None = None  # /proc start time: tells a reused PID from the holder

    def when(self) -> str:
        t = time.localtime(self.started)
        same_day = time.strftime("%Y-%m-%d", t) == time.strftime("%Y-%m-%d")
        return time.strftime("%H:%M" if same_day else "%Y-%m-%d %H:%M", t)

    def is_me(self) -> bool:
        return self.pid == os.getpid() and self.host == socket.gethostname()

    def alive(self) -> bool:
        """False only when sure: a holder on another host may be running."""
        if self.host != socket.gethostname():
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # exists, owned by another user
            pass
        return self.proc_start is None or _proc_start(self.pid) in (None, self.proc_start)


def is_main_process() -> bool:
    """True outside torchrun/accelerate and on its rank 0 (only that one claims)."""
    rank = os.environ.get("RANK") or os.environ.get("LOCAL_RANK") or "0"
    return rank.strip() == "0"


def holder(directory: Path) -> Holder | None:
    """The run holding `directory`, or None if no lock (or a stale one) is there."""
    info = _read(Path(directory) / LOCK)
    return info if isinstance(info, Holder) and info.alive() else None


def in_use_error(directory: Path, flag: str, h: Holder) -> ConfigError:
    where = "" if h.host == socket.gethostname() else f" on host {h.host}"
    gone = ("" if not where else f" If that run is gone, delete {Path(directory) / LOCK}.")
    return ConfigError(f"{flag} {directory} is in use by PID {h.pid}{where} since {h.when()} "
                       f"(started by `{h.command}`); wait for it or choose another {flag}.{gone}")


def claim(directory: Path, command: str, flag: str = "--out") -> None:
    """Create `directory` if needed and take its lock, or raise ConfigError naming the run that
    holds it. A no-op in a process that holds it already and on non-main distributed ranks."""
    path = Path(directory).resolve()
    if path in _HELD or not is_main_process():
        return
    created = _mkdirs(path, flag)
    lock = path / LOCK
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # each round: create, else judge the lock that is there
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            pass
        except OSError as e:
            raise ConfigError(f"Cannot write to {path} (for {flag} {directory}): {e.strerror}. "
                              f"Choose a writable {flag}.") from None
        else:
            with os.fdopen(fd, "w") as f:
                json.dump(_me(command), f)
            _HELD[path] = created
            return
        info = _read(lock)
        if info is None:  # released between our two looks
            continue
        if info == "fresh":
            time.sleep(0.2)  # its holder is writing it
            continue
        if info == "stale" or not info.alive():
            if _take_over(lock, info):
                print(f"note: {flag} {directory} was claimed by "
                      + (f"PID {info.pid} (`{info.command}`, since {info.when()}), which is no "
                         "longer running" if isinstance(info, Holder) else "a run that died "
                         "while claiming it") + "; taking it over.", file=sys.stderr)
            continue
        if info.is_me():  # e.g. a copy of a directory this process holds: still us
            _HELD[path] = created
            return
        raise in_use_error(directory, flag, info)
    raise ConfigError(f"{flag} {directory}: could not claim {lock} (other runs keep claiming it); "
                      f"choose another {flag}.")


def release(directory: Path) -> None:
    """Give up the lock on `directory` if this process holds it; a directory the claim created
    and nothing was written to is removed again."""
    path = Path(directory).resolve()
    created = _HELD.pop(path, [])
    lock = path / LOCK
    info = _read(lock)
    if isinstance(info, Holder) and info.is_me():
        lock.unlink(missing_ok=True)
    for d in created:  # innermost first; stops at the first that holds something
        try:
            d.rmdir()
        except OSError:
            break


def _release_all() -> None:
    for path in list(_HELD):
        release(path)


atexit.register(_release_all)  # a run that ends without release(); a killed one leaves a dead PID


def _me(command: str) -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
            "command": command, "proc_start": _proc_start(os.getpid())}


def _read(lock: Path) -> Holder | str | None:
    """The lock's holder; "fresh" while its holder is still writing it, "stale" if it never
    will; None when there is no lock."""
    try:
        text, age = lock.read_text(), time.time() - lock.stat().st_mtime
    except FileNotFoundError:
        return None
    except OSError:
        return "stale"
    try:
        d = json.loads(text)
        return Holder(int(d["pid"]), str(d["host"]), float(d["started"]), str(d["command"]),
                      d.get("proc_start"))
    except (ValueError, KeyError, TypeError):
        return "fresh" if age < _UNWRITTEN_GRACE_S else "stale"


def _take_over(lock: Path, seen: Holder | str) -> bool:
    """Remove the stale lock we judged, and only that one. Takers-over queue on a second O_EXCL
    file and look again inside it: of several runs that found the same stale lock, one removes
    it and the others then find the winner's fresh lock."""
    mutex = lock.with_name(f"{LOCK}.takeover")
    try:
        os.close(os.open(mutex, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:
        with contextlib.suppress(OSError):  # left by a run that died right here
            if time.time() - mutex.stat().st_mtime > _UNWRITTEN_GRACE_S:
                mutex.unlink()
        time.sleep(0.05)
        return False
    except OSError:
        return False
    try:
        if _read(lock) != seen:
            return False
        lock.unlink()
        return True
    finally:
        mutex.unlink(missing_ok=True)


def _mkdirs(path: Path, flag: str) -> list[Path]:
    """mkdir -p; returns the directories it created, innermost first."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(f"Cannot write {flag} {path}: a file is in the way ("
                          f"{next((p for p in path.parents if p.is_file()), path)}). Choose another "
                          f"{flag}.") from None
    except OSError as e:
        base = next((p for p in path.parents if p.exists()), path)
        raise ConfigError(f"Cannot write to {base} (for {flag} {path}): {e.strerror}. Choose a "
                          f"writable {flag}.") from None
    return missing


def _proc_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]  # field 22; the name in (...) may hold spaces
