"""One attempt of `recipe run` at a run, seen from the launching process: the checkpoint a resume continues from,
the command that repeats this one (for every hint the run prints), and how the attempt ended (status.json)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from runner.common.files import read_jsonl

from .checkpoints import choose, set_aside_incomplete
from .finite import final_losses
from .summary import STOPPED


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def rerun_command(args: argparse.Namespace) -> list[str]:
    """`recipe run RECIPE` with the --set overrides and the consent flags of the command that ran (not --resume,
    --resume-from, --overwrite or --dry-run: each hint adds what it means)."""
    argv = ["recipe", "run", args.recipe]
    for override in args.set or []:
        argv += ["--set", override]
    for flag in ("trust_code", "trust_remote_code", "verbose"):
        if getattr(args, flag, False):
            argv.append("--" + flag.replace("_", "-"))
    return argv


def resume_point(out: Path, args: argparse.Namespace, first_node: bool) -> str:
    """The checkpoint this resume continues from, said in the terminal; the first node sets aside what cannot be
    resumed from. Raises checkpoints.ResumeError."""
    return str(choose(out, args.resume_from, move=first_node, say=say if first_node else lambda m: None).resolve())


def ended(out: Path, code: int) -> tuple[str, str | None]:
    """(state, why) of an attempt that exited with `code`; after a bad end, checkpoints that do not match their
    marker (a save cut short) are set aside, so that none is left as the newest."""
    if code == 0:
        bad = final_losses(read_jsonl(out / "metrics.jsonl"))
        if bad:
            return "failed", f"the final {', '.join(bad)} is not finite"
        return "finished", None
    try:
        set_aside_incomplete(out, say=say)
    except OSError as exc:  # a read-only disk: it stays where it is, and says so
        say(f"recipe run: cannot set aside incomplete checkpoints in {out}: {exc.strerror or exc}")
    if code in STOPPED:
        return "stopped", None
    return "failed", None
