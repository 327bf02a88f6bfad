"""Checkpoints a run can trust: each one is complete only when `checkpoint-complete.json`, written last by the save
that finished it, says so and lists its files with their sizes (and SHA-256 of those up to HASH_LIMIT bytes).

`--resume` continues from the newest checkpoint that matches its marker and says which; `--resume-from
checkpoint-N` chooses one. A checkpoint without a marker (a save that was interrupted, or stopped by a full disk)
or whose files no longer match it is named and moved to OUTPUT_DIR/set-aside/, never deleted. A resume from a
checkpoint without the optimizer, schedule or random states says what is missing. Imports no torch: the parent
chooses, the training process writes the markers.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
from pathlib import Path

from runner.common.files import write_atomic
from runner.common.rundir import record_created

MARKER = "checkpoint-complete.json"
SET_ASIDE = "set-aside"
HASH_LIMIT = 1 << 30  # files larger than this are checked by size only: hashing them would cost more than the save
# The states a resume needs to continue exactly as an uninterrupted run would, by what they hold: file patterns
# (transformers' names; DeepSpeed keeps the optimizer in global_stepN/).
STATES = {
    "the optimizer state (optimizer.pt)": ("optimizer.pt", "global_step*"),
    "the learning-rate schedule (scheduler.pt)": ("scheduler.pt",),
    "the random-number state (rng_state.pth)": ("rng_state.pth", "rng_state_*.pth"),
}
_NAME = re.compile(r"checkpoint-(\d+)")


class ResumeError(Exception):
    """No checkpoint to resume from, or the one chosen cannot be; the message says why and what to do."""


def step_of(path: Path) -> int | None:
    match = _NAME.fullmatch(Path(path).name)
    return int(match.group(1)) if match else None


def checkpoints(out: Path) -> list[Path]:
    """The checkpoint-N folders of a run, oldest first."""
    found = [p for p in Path(out).glob("checkpoint-*") if step_of(p) is not None and p.is_dir() and not p.is_symlink()]
    return sorted(found, key=step_of)


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink() and p.name != MARKER)


def write_marker(folder: Path, step: int) -> None:
    """Mark `folder` complete: every file it holds, with its size and (up to HASH_LIMIT bytes) its hash."""
    files = {}
    for path in _files(folder):
        size = path.stat().st_size
        files[str(path.relative_to(folder))] = {"size": size, "sha256": _digest(path) if size <= HASH_LIMIT else None}
    write_atomic(folder / MARKER, json.dumps({"step": step, "files": files}, indent=1) + "\n")


def problem(folder: Path) -> str | None:
    """Why `folder` cannot be resumed from (None when it matches its marker). A missing state file is not a problem
    here: `missing_states` says what a resume from it loses."""
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
        files = marker["files"]
    except FileNotFoundError:
        return f"has no {MARKER} (written last by a save that finished): its save was interrupted"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"{MARKER} cannot be read ({exc})"
    for name, expected in files.items():
        path = folder / name
        if not path.is_file():
            if _is_state(name):
                continue
            return f"{path} is missing (listed in its {MARKER})"
        size = path.stat().st_size
        if size != expected["size"]:
            return f"{path} is {size} bytes, {expected['size']} when it was saved: it is damaged"
        if expected.get("sha256") and _digest(path) != expected["sha256"]:
            return f"{path} differs from what was saved (its SHA-256 does not match {MARKER}): it is damaged"
    return None


def _is_state(name: str) -> bool:
    top = Path(name).parts[0]
    return any(fnmatch.fnmatchcase(top, p) for patterns in STATES.values() for p in patterns)


def missing_states(folder: Path) -> list[str]:
    """The states a resume from `folder` would lack (each a reason it would not repeat an uninterrupted run)."""
    names = [p.name for p in folder.iterdir()] if folder.is_dir() else []
    return [what for what, pats in STATES.items() if not any(fnmatch.fnmatchcase(n, p) for n in names for p in pats)]


def set_aside(out: Path, folder: Path) -> Path:
    """Move `folder` to OUTPUT_DIR/set-aside/ (a new name if one is there); returns where it went."""
    aside = Path(out) / SET_ASIDE
    record_created(Path(out), SET_ASIDE)
    aside.mkdir(exist_ok=True)
    target, n = aside / folder.name, 1
    while target.exists():
        n += 1
        target = aside / f"{folder.name}.{n}"
    os.rename(folder, target)
    return target


def set_aside_incomplete(out: Path, say=print) -> list[Path]:
    """Set aside every checkpoint that does not match its marker, naming it and why (after a run ended badly, so
    that no partial checkpoint is left as the newest)."""
    moved = []
    for folder in checkpoints(out):
        why = problem(folder)
        if why:
            moved.append(set_aside(out, folder))
            say(f"recipe run: {folder.name} is not complete ({why}); set aside as {moved[-1]}")
    return moved


def choose(out: Path, resume_from: str | None = None, *, move: bool = True, say=print) -> Path:
    """The checkpoint a resume continues from: `resume_from` (a checkpoint-N name or path) or the newest complete
    one. With `move`, incomplete checkpoints, and those newer than the one chosen (the resumed run saves its own
    in their place), are set aside. Raises ResumeError."""
    out = Path(out)
    found = checkpoints(out)
    if resume_from:
        chosen = Path(resume_from) if Path(resume_from).is_absolute() else out / Path(resume_from).name
        if chosen not in found:
            names = ", ".join(p.name for p in found) or "none"
            raise ResumeError(f"--resume-from: {chosen} is not a checkpoint of {out} (its checkpoints: {names})")
        why = problem(chosen)
        if why:
            raise ResumeError(f"--resume-from: {chosen} {why}; choose another with --resume-from checkpoint-N")
    else:
        chosen = next((p for p in reversed(found) if problem(p) is None), None)
    for folder in reversed(found):
        if chosen is not None and step_of(folder) <= step_of(chosen):
            break
        why = problem(folder) or f"newer than {chosen.name}, which this run resumes from"
        if move:
            target = set_aside(out, folder)
            say(f"recipe run: {folder.name} is not resumed from ({why}); set aside as {target}")
    if chosen is None:
        raise ResumeError(f"--resume: {out} has no complete checkpoint to continue from; start again with --overwrite")
    say(f"recipe run: resuming from {chosen} (step {step_of(chosen)})")
    lacking = missing_states(chosen)
    if lacking:
        say(
            f"recipe run: warning: {chosen.name} lacks {', '.join(lacking)}; the run continues, but it is no longer "
            "reproducible: its result will differ from an uninterrupted run's"
        )
    return chosen


class OutputWriteError(Exception):
    """A save stopped because the output directory's disk is full or read-only; the message says where and what to
    do (one line, no traceback)."""


def disk_problem(path: Path, exc: BaseException) -> OSError | None:
    """The OSError a failed write amounts to when the disk under `path` is full or read-only (libraries report it
    in their own words: torch's "file write failed", safetensors' "StorageFull"), else None."""
    import errno
    import shutil

    from runner.common.rundir import WRITE_ERRORS

    seen = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in WRITE_ERRORS:
            return seen
        seen = seen.__cause__ or seen.__context__
    existing = next((p for p in (Path(path), *Path(path).parents) if p.exists()), Path("/"))
    try:
        if os.statvfs(existing).f_flag & os.ST_RDONLY:
            return OSError(errno.EROFS, os.strerror(errno.EROFS))
        if shutil.disk_usage(existing).free < (1 << 20):
            return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    except OSError:
        return None
    return None


def mark_complete_when_saved(trainer) -> None:
    """Wrap `trainer._save_checkpoint`: once every process has written its part of checkpoint-N, the main process
    writes its marker; a save stopped by a full or read-only disk raises OutputWriteError naming the checkpoint."""
    from runner.common.files import cannot_write

    original = trainer._save_checkpoint

    def save(model, trial):
        folder = Path(trainer._get_output_dir(trial=trial)) / f"checkpoint-{trainer.state.global_step}"
        if trainer.args.should_save:  # a folder being written again is not complete until its new marker
            (folder / MARKER).unlink(missing_ok=True)
        try:
            original(model, trial)
        except Exception as exc:
            cause = disk_problem(folder, exc)
            if cause is None:
                raise
            raise OutputWriteError(cannot_write(folder, cause)) from exc
        trainer.accelerator.wait_for_everyone()
        if trainer.args.should_save:
            write_marker(folder, trainer.state.global_step)

    trainer._save_checkpoint = save
