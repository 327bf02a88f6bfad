"""An exclusive lock on a run's output directory, held for the whole run.

`OUTPUT_DIR/.recipe-run.lock` holds who runs there (host, pid, start time, command) and is locked with
`flock` by the process that holds it, for as long as it lives: the kernel releases it when that process ends,
however it ends. A second run into the same directory is refused at once, naming the holder. A lock file
that nobody holds any more (its holder died) is reported as stale with how to clear it, and never broken
silently: a run that died may have left checkpoints worth resuming.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

LOCK_NAME = ".recipe-run.lock"
HOLDER_ENV = "RECIPE_RUN_LOCK"  # set for the training processes of a run whose launcher holds the lock


class LockError(Exception):
    """The output directory is in use, or a dead run's lock is still there; the message says what to do."""


@dataclass
class RunLock:
    path: Path
    fd: int

    def release(self) -> None:
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self.fd)


def _describe(holder: dict) -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
    return f"pid {holder.get('pid')} on {holder.get('host')}, started {started}: {holder.get('command', '?')}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_holder(out_dir: Path) -> Optional[dict]:
    try:
        return json.loads((Path(out_dir) / LOCK_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def lock_state(out_dir: Path) -> Optional[str]:
    """running (someone holds the output lock), stale (its holder is gone), or None (no lock)."""
    lock = Path(out_dir) / LOCK_NAME
    if not lock.exists() or lock.is_symlink():
        return None
    fd = os.open(lock, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return "running"
    finally:
        os.close(fd)
    return "stale"


def acquire(out_dir: Path, command: str) -> RunLock:
    """Take the lock of `out_dir` (created if needed) or raise LockError naming who holds it."""
    out_dir = Path(out_dir)
    path = out_dir / LOCK_NAME
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as exc:  # read-only, full, or the lock's name is a link (ELOOP): one line, no traceback
        from runner.common.files import cannot_write

        raise LockError(cannot_write(path, exc)) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        holder = read_holder(out_dir) or {}
        raise LockError(
            f"output.dir: {out_dir} is in use by another run ({_describe(holder)}); wait for it to finish, stop "
            f"it, or set another output.dir"
        ) from None
    existing = os.read(fd, 1 << 16)
    if existing.strip():  # a lock file nobody holds: its run ended without releasing it
        try:
            holder = json.loads(existing)
        except ValueError:
            holder = {}
        here = holder.get("host") == socket.gethostname()
        if here:
            state = "is no longer running" if not _alive(int(holder.get("pid") or 0)) else "no longer holds it"
        else:
            state = f"ran on {holder.get('host')} and no longer holds it (check that host before clearing it)"
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        raise LockError(
            f"output.dir: {out_dir} has a stale lock: the run that took it {state} ({_describe(holder)}). If no run "
            f"uses the directory, delete {path}, then continue with --resume or start again with --overwrite"
        )
    record = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time(), "command": command}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
    os.fsync(fd)
    return RunLock(path, fd)


def in_use(out_dir: Path) -> None:
    """Raise LockError, naming the holder, when a run holds the lock of `out_dir` (what a dry run checks before it
    writes launch files there)."""
    if lock_state(out_dir) == "running":
        holder = read_holder(out_dir) or {}
        raise LockError(
            f"output.dir: {out_dir} is in use by a running run ({_describe(holder)}); its launch files are the ones "
            "it runs and are not rewritten: wait for it to finish, or set another output.dir (--set output.dir=...)"
        )
