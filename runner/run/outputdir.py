"""The output directory checks of the preflight: a run writes only into a directory that is new, empty or a run's
(runner/common/rundir.py), never into one that holds the user's work, never through a symlink, and `--overwrite`
removes only what a run wrote."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from runner.common import rundir
from runner.common.lock import lock_state
from schemas import Recipe
from schemas.problems import Problem

OUTPUT_DIR = ("output", "dir")
SHOWN = 5  # names listed in a message


def _names(items: list) -> str:
    shown = ", ".join(str(i) for i in items[:SHOWN])
    return shown + (f" and {len(items) - SHOWN} more" if len(items) > SHOWN else "")


def protected(recipe: Recipe, recipe_file: Optional[str]) -> dict[Path, str]:
    """What a run must never write over, by what it is: the root, the home and current directories, the recipe
    file, its local data, model, tokenizer, template and starting adapter."""
    from schemas.datasets import split_source

    found = {Path("/"): "the root directory", Path.home(): "your home directory", Path.cwd(): "the current directory"}
    if recipe_file:
        found[Path(recipe_file)] = f"the recipe {recipe_file}"
    for entry in (*recipe.datasets.train, *recipe.datasets.eval):
        kind, rest, _ = split_source(entry.source)
        if kind != "hf":
            found[Path(rest)] = f"the data {rest}"
    m = recipe.model
    for what, value in (("model", m.name_or_path), ("tokenizer", m.tokenizer), ("chat template", m.chat_template)):
        if value and Path(value).expanduser().exists():
            found[Path(value)] = f"the {what} {value}"
    start = getattr(recipe.adapter, "start_from", None)
    if start and Path(start).expanduser().exists():
        found[Path(start)] = f"the starting adapter {start}"
    return {Path(os.path.realpath(p.expanduser())): what for p, what in found.items()}


def _unsafe(out: Path, recipe: Recipe, recipe_file: Optional[str]) -> list[Problem]:
    real = Path(os.path.realpath(out))
    for path, what in protected(recipe, recipe_file).items():
        if path == real or real in path.parents:
            holds = "is" if path == real else "holds"
            message = (
                f"{out} {holds} {what}; a run writes only into a directory of its own (and --overwrite would "
                "delete what is there): set output.dir to a new directory, e.g. outputs/<name>"
            )
            return [Problem(OUTPUT_DIR, message, "output-dir-unsafe")]
    return []


def _links(out: Path) -> list[Problem]:
    links = rundir.symlinks(out) if out.exists() or out.is_symlink() else []
    if not links:
        return []
    if links == [out]:
        message = (
            f"{out} is a symlink (to {os.readlink(out)}); a run writes through no link: set output.dir to a real "
            "directory"
        )
    else:
        message = (
            f"{out} holds symlinks ({_names(links)}); a run writes through no link: remove them (or choose another "
            "output.dir)"
        )
    return [Problem(OUTPUT_DIR, message, "output-dir-symlink")]


def _writable(out: Path) -> list[Problem]:
    existing = next((p for p in (out, *out.parents) if p.exists()), None)
    if existing is None or os.access(existing, os.W_OK | os.X_OK):
        return []
    message = (
        f"cannot write {existing}: permission denied or a read-only file system; make it writable, or set "
        "output.dir to a writable directory"
    )
    return [Problem(OUTPUT_DIR, message, "output-dir-unwritable")]


def _foreign(out: Path, overwrite: bool) -> list[Problem]:
    others = rundir.foreign(out)
    if not others:
        return []
    if overwrite:
        message = (
            f"--overwrite would delete only what a run wrote, and {out} also holds {_names(others)}, which no run "
            "wrote; move them away, or choose an empty or new output.dir"
        )
    else:
        message = (
            f"{out} holds {_names(others)}, which no run wrote, and a run would write over them; choose an empty or "
            "new output.dir (or move them away)"
        )
    return [Problem(OUTPUT_DIR, message, "output-dir-not-a-run")]


def check_output_place(recipe: Recipe, overwrite: bool = False, recipe_file: Optional[str] = None) -> list[Problem]:
    """Where a run (or a dry run's launch files) may write: not the user's work, no link, writable, a run's."""
    out = Path(recipe.output_dir)
    return _unsafe(out, recipe, recipe_file) or _links(out) or _writable(out) or _foreign(out, overwrite)


def check_output_dir(recipe: Recipe, overwrite: bool, resume: bool, recipe_file: Optional[str] = None) -> list[Problem]:
    out = Path(recipe.output_dir)
    if lock_state(out) == "running":  # a run is writing there: the lock refuses this one, naming it
        return _unsafe(out, recipe, recipe_file) or _links(out)
    placed = check_output_place(recipe, overwrite, recipe_file)
    if placed:
        return placed
    if (out / "recipe.lock.yaml").exists() and not (overwrite or resume):
        message = (
            f"{out} holds a finished run (recipe.lock.yaml); pass --overwrite to replace it, or set another output.dir"
        )
        return [Problem(OUTPUT_DIR, message, "output-dir-finished")]
    if resume and not any(out.glob("checkpoint-*")):
        return [
            Problem(
                OUTPUT_DIR, f"--resume: {out} has no checkpoint-* folder to continue from", "resume-without-checkpoint"
            )
        ]
    if resume and recipe.training.save_only_model:
        message = (
            "--resume: training.save_only_model is true, so the checkpoints hold weights without the optimizer and "
            "schedule states to continue from; start again with --overwrite, or start a new run from a checkpoint's "
            "weights (e.g. `adapter.start_from: <checkpoint>` for an adapter)"
        )
        return [Problem(("training", "save_only_model"), message, "resume-weights-only")]
    if out.exists() and not (overwrite or resume) and any(out.glob("checkpoint-*")):
        message = (
            f"{out} holds checkpoints of an unfinished run; pass --resume to continue it or --overwrite to start again"
        )
        return [Problem(OUTPUT_DIR, message, "output-dir-unfinished")]
    return []


def refuse_symlinks(out: Path) -> None:
    """In the training process, before the model is saved: a link that appeared since the preflight is not
    written through."""
    links = rundir.symlinks(Path(out))
    if links:
        raise rundir.OutputDirError(
            f"output.dir: {out} holds symlinks ({_names(links)}) that appeared during the run; nothing was saved "
            "through them: remove them, then continue with --resume"
        )
