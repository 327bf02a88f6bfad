"""A run's claim on its output directory: the marker a run writes first, and the manifest of what it wrote there.

`OUTPUT_DIR/.recipe-run` is JSON lines. The first line marks the directory as a run's (`{"recipe_run": 1,
"dry_run": ...}`: a `recipe run --dry-run` marks it too, so that its launch files are known); each later line
names, relative to the directory, a top-level file or folder a run created there (`{"path": "logs"}`), or a
pattern for folders a library names (`checkpoint-*`), appended as the run creates them. `--overwrite` removes
only what the manifest names, and a run refuses a directory holding anything else (runner/run/outputdir.py).

Writes go through no symlink: the marker, the manifest and the lock are opened with O_NOFOLLOW, and
`symlinks()` lists the links a directory holds so that a run can refuse it before writing.
"""

from __future__ import annotations

import errno
import fnmatch
import json
import os
import shutil
from pathlib import Path

from runner.common.files import cannot_write
from runner.common.lock import LOCK_NAME

MARKER = ".recipe-run"
OWN = (MARKER, LOCK_NAME)  # what every run holds, named in no manifest line
WRITE_ERRORS = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT)


class OutputDirError(Exception):
    """The output directory cannot be taken or written; the message names it and says what to do."""


def _append(out: Path, records: list[dict]) -> None:
    fd = os.open(out / MARKER, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        os.write(fd, "".join(json.dumps(r) + "\n" for r in records).encode())
    finally:
        os.close(fd)


def read_manifest(out: Path) -> dict | None:
    """{"dry_run": bool, "paths": [...]} of a directory a run marked, else None."""
    path = Path(out) / MARKER
    if path.is_symlink() or not path.is_file():
        return None
    try:
        lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, ValueError):
        return None
    if not lines or not isinstance(lines[0], dict) or lines[0].get("recipe_run") != 1:
        return None
    manifest = {"dry_run": bool(lines[0].get("dry_run")), "paths": []}
    for line in lines[1:]:
        if "dry_run" in line:
            manifest["dry_run"] = bool(line["dry_run"])
        if isinstance(line.get("path"), str):
            manifest["paths"].append(line["path"])
    return manifest


def take(out: Path, dry_run: bool = False) -> None:
    """Mark `out` (created if needed) as a run's before anything else is written there; a real run after a dry
    run turns the mark into a run's."""
    out = Path(out)
    if out.is_symlink():
        raise OutputDirError(f"output.dir: {out} is a symlink; a run writes through no link: set output.dir to a "
                             "real directory")  # fmt: skip
    try:
        out.mkdir(parents=True, exist_ok=True)
        manifest = read_manifest(out)
        if manifest is None:
            _append(out, [{"recipe_run": 1, "dry_run": dry_run}])
        elif manifest["dry_run"] and not dry_run:
            _append(out, [{"dry_run": False}])
    except OSError as exc:
        raise OutputDirError(cannot_write(out, exc)) from None


def record_created(out: Path, *paths: str) -> None:
    """Append to the manifest the top-level names (or name patterns) a run creates in `out`; nothing when no run
    marked `out` (e.g. `recipe eval` of a directory that is not a run)."""
    manifest = read_manifest(Path(out))
    new = [p for p in dict.fromkeys(paths) if manifest is not None and p not in manifest["paths"] and p not in OWN]
    if new:
        _append(Path(out), [{"path": p} for p in new])


def _covered(name: str, paths: list[str]) -> bool:
    """A recorded name or pattern, or the temporary sibling `.NAME.*` write_atomic fills before replacing it."""
    return name in OWN or any(fnmatch.fnmatchcase(name, p) or name.startswith(f".{p}.") for p in paths)


def foreign(out: Path) -> list[str]:
    """The top-level entries of `out` no run wrote (all of them when no run marked it)."""
    out = Path(out)
    if not out.is_dir() or out.is_symlink():
        return []
    manifest = read_manifest(out)
    paths = manifest["paths"] if manifest else []
    names = sorted(e.name for e in out.iterdir())
    if manifest is None:
        return names
    return [n for n in names if not _covered(n, paths)]


def symlinks(out: Path) -> list[Path]:
    """`out` itself when it is a link, else every link inside it (not followed)."""
    out = Path(out)
    if out.is_symlink():
        return [out]
    found = []
    for root, dirs, files in os.walk(out, followlinks=False):
        found += [Path(root) / n for n in (*dirs, *files) if (Path(root) / n).is_symlink()]
    return sorted(found)


def clear(out: Path) -> list[str]:
    """Remove what the manifest names (for --overwrite), keeping the marker and the lock; returns the names
    removed. Anything the manifest does not name stays (the preflight refused such a directory)."""
    out = Path(out)
    manifest = read_manifest(out) or {"paths": []}
    removed = []
    for entry in sorted(out.iterdir()):
        if entry.name in OWN or not _covered(entry.name, manifest["paths"]):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
        removed.append(entry.name)
    (out / MARKER).unlink(missing_ok=True)
    _append(out, [{"recipe_run": 1, "dry_run": False}])
    return removed
