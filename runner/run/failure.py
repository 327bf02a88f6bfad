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


def record_failure(output_dir: str, stage: str, exc: BaseException, log: Path, verbose: bool) -> int:
    """Write the failure record, put the traceback in the log file, print a short account; returns the exit code."""
    rank = os.environ.get("RANK", "0")
    error = f"{type(exc).__name__}: {exc}".strip().splitlines()[0][:500]
    record = {
        "stage": stage,
        "rank": int(rank),
        "error": error,
        "where": _where(exc),
        "hint": HINTS.get(type(exc).__name__),
        "log": str(log),
        "time": time.time(),
    }
    logging.getLogger("runner").error("failed while %s", stage, exc_info=exc)  # to the log file only
    write_atomic(failure_path(output_dir, rank), json.dumps(record, indent=1) + "\n")
    if verbose:
        traceback.print_exception(exc, file=sys.stderr)
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
