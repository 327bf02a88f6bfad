"""Atomic writes: a reader sees the old file (or directory) or the whole new one, never a part."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable


def write_atomic(path: Path, text: str | bytes, mode: int = 0o644) -> None:
    """Write `text` (or bytes) to `path` so that a reader sees the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(text.encode("utf-8") if isinstance(text, str) else text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def replace_dir_atomic(target: Path, fill: Callable[[Path], None]) -> None:
    """Fill a temporary sibling directory, then move it to `target` (replacing it): a reader never sees half of it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        tmp.chmod(0o755)
        fill(tmp)
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
            target.rename(old / target.name)
            tmp.rename(target)
            shutil.rmtree(old)
        else:
            tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_jsonl(path: Path) -> list[dict]:
    """The records of a JSON-lines file such as a run's metrics.jsonl (none when it is missing; a line cut short by
    a run that is still writing is skipped)."""
    rows = []
    if Path(path).is_file():
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
    return rows


def last_value(rows: list[dict], key: str) -> Any:
    """The last value `key` took in `rows`, or None."""
    return next((r[key] for r in reversed(rows) if key in r), None)


def cannot_write(path: Path, exc: OSError) -> str:
    """One line for a write into the output directory that failed: the path, why, and what to do."""
    reason = exc.strerror or str(exc)
    hint = "free space on its disk" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "make it writable"
    return f"output.dir: cannot write {path}: {reason}; {hint}, or set output.dir to a writable directory"
