"""The result of a run, put in place whole: the model (or adapter), its tokenizer, the model card and the lock file
are written into a temporary folder inside the output directory, then moved into it, the lock file last. The lock
file of an earlier result is removed before the first file moves, so a directory holding a lock file never holds
half the old result and half the new: killed while moving, the run has no lock file and is unfinished (resumable)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from runner.common.rundir import record_created

STAGING = ".result"  # the temporary folder (one name: every process of the run writes its part there)
LOCK_FILE = "recipe.lock.yaml"


def staging_dir(out: Path) -> Path:
    """An empty temporary folder in `out` for the result (recorded first, so that --overwrite may remove it; one
    left by an attempt that was killed while saving is emptied)."""
    record_created(Path(out), STAGING)
    staged = Path(out) / STAGING
    if staged.is_dir() and not staged.is_symlink():
        shutil.rmtree(staged)
    staged.mkdir()
    return staged


def commit(out: Path, staged: Path) -> list[str]:
    """Move what `staged` holds into `out` (replacing what is there), the lock file last; returns the names."""
    out, staged = Path(out), Path(staged)
    names = sorted(p.name for p in staged.iterdir() if p.name != LOCK_FILE)
    record_created(out, *names, LOCK_FILE)
    (out / LOCK_FILE).unlink(missing_ok=True)  # from here until the new one is in place, the run is unfinished
    for name in names:
        target = out / name
        if target.is_dir() and not target.is_symlink() and (staged / name).is_dir():
            shutil.rmtree(target)
        os.replace(staged / name, target)
    if (staged / LOCK_FILE).is_file():
        os.replace(staged / LOCK_FILE, out / LOCK_FILE)
    staged.rmdir()
    return names
