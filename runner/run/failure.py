"""What a training process leaves when it fails: the stage it was in, the error and where it was raised, written
to OUTPUT_DIR/logs/failure-rankN.json for `recipe run`'s closing summary, with the full traceback in the
process's log file. The terminal gets a few lines, not a traceback (`--verbose` shows the traceback too)."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import traceback
from pathlib import Path

from runner.common.files import write_atomic

# The stages of a training process, as a failure summary names them.
STAGES = {
    "load": "loading the model and data",
    "train": "training",
    "evaluate": "the final evaluation",
    "save": "saving the result",
}
# Errors with a cause a user can act on, by exception class name: what to do.
HINTS = {
    "OutOfMemoryError": "out of memory: `recipe plan RECIPE` shows the estimate; lower training.micro_batch_size or "
    "data.max_length, or turn on training.gradient_checkpointing",
}


def failure_path(output_dir: str | Path, rank: int | str) -> Path:
    return Path(output_dir) / "logs" / f"failure-rank{rank}.json"


class Stage:
    """The stage a training process is in (named in its failure record)."""

    def __init__(self) -> None:
        self.name = "load"

    def __call__(self, name: str) -> None:
        assert name in STAGES, name
        self.name = name


def _where(exc: BaseException, frames: int = 3) -> list[str]:
    """The innermost frames, as file:line in function."""
    stack = traceback.extract_tb(exc.__traceback__)
    return [f"{f.filename}:{f.lineno} in {f.name}" for f in stack[-frames:]]


def _file_being_read(exc: BaseException) -> str | None:
    """The file torch or safetensors was loading when `exc` was raised (their errors do not name it)."""
    tb, found = exc.__traceback__, None
    while tb is not None:
        code, local = tb.tb_frame.f_code, tb.tb_frame.f_locals
        if code.co_filename.endswith(("torch/serialization.py", "safetensors/torch.py")):
            value = local.get("f", local.get("filename"))
            found = str(value) if isinstance(value, (str, os.PathLike)) else found
        tb = tb.tb_next
    return found


def explain(exc: BaseException, output_dir: str) -> tuple[str, bool]:
    """(one line for `exc`, whether it is the whole story): a full or read-only disk and a file of a checkpoint
    that cannot be read are said in the project's words (never torch's advice to load with weights_only=False)."""
    from runner.common.files import cannot_write

    from .checkpoints import OutputWriteError, disk_problem
    from .finite import NonFiniteError

    if isinstance(exc, (OutputWriteError, NonFiniteError)):
        return str(exc), True
    if isinstance(exc, OSError) and disk_problem(Path(output_dir), exc) is not None:
        return cannot_write(Path(exc.filename or output_dir), disk_problem(Path(output_dir), exc)), True
    error = f"{type(exc).__name__}: {exc}".strip().splitlines()[0][:500]
    read = _file_being_read(exc)
    if read is not None or "weights_only" in error:
        what = read or "a checkpoint file"
        return (
            f"{what} cannot be read ({type(exc).__name__}): it is damaged or was not written by this run; resume from "
            "another checkpoint with `--resume-from checkpoint-N`, or start again with --overwrite"
        ), False
    return error, False


def record_failure(output_dir: str, stage: str, exc: BaseException, log: Path, verbose: bool) -> int:
    """Write the failure record, put the traceback in the log file, print a short account; returns the exit code."""
    rank = os.environ.get("RANK", "0")
    logging.raiseExceptions = False  # a log file on a full disk: no "--- Logging error ---" tracebacks
    error, whole = explain(exc, output_dir)
    record = {
        "stage": stage,
        "rank": int(rank),
        "error": error,
        "where": _where(exc),
        "hint": HINTS.get(type(exc).__name__),
        "whole": whole,  # the error says it all: no frames to show
        "log": str(log),
        "time": time.time(),
    }
    logging.getLogger("runner").error("failed while %s", stage, exc_info=exc)  # to the log file only
    try:
        write_atomic(failure_path(output_dir, rank), json.dumps(record, indent=1) + "\n")
    except OSError:  # the disk is full or read-only: the terminal line below is the record
        pass
    if verbose:
        traceback.print_exception(exc, file=sys.stderr)
    if whole:
        print(f"runner.run.train (rank {rank}): {error}", file=sys.stderr, flush=True)
        return 1
    lines = [f"runner.run.train (rank {rank}): failed at the {stage} stage: {error}"]
    lines += [f"  at {w}" for w in record["where"]]
    if record["hint"]:
        lines.append(f"  {record['hint']}")
    lines.append(f"  the full traceback is in {log}")
    print("\n".join(lines), file=sys.stderr, flush=True)
    return 1


def read_failures(output_dir: str | Path) -> list[dict]:
    out = []
    for path in sorted((Path(output_dir) / "logs").glob("failure-rank*.json")):
        try:
            out.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    return sorted(out, key=lambda r: r.get("time", 0))


def clear_failures(output_dir: str | Path) -> None:
    for path in (Path(output_dir) / "logs").glob("failure-rank*.json"):
        path.unlink(missing_ok=True)


def last_log_lines(log: Path, count: int = 5) -> list[str]:
    """The last warnings and errors of a log file (what a process killed without a Python error left)."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    marked = [line for line in lines if " WARNING " in line or " ERROR " in line or "Error" in line]
    return (marked or lines)[-count:]
