"""What `recipe run` says when the run ends: where the result is, its final numbers and what to do next, or, when it
failed, the stage that failed and where its files are. Read from the files the run wrote (no training imports)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from runner.common.evalresults import headlines, read_results, results_path
from runner.common.files import last_value, read_jsonl
from runner.common.trained import MERGEABLE
from runner.plan import Plan

STOPPED = (129, 130, 143)  # exit codes of a run stopped by SIGHUP, SIGINT (Ctrl-C) or SIGTERM
STATUS_ROOM = 1024  # bytes kept after the running state in status.json


def summary(plan: Plan, recipe_file: str, code: int, wall_s: float, rerun: list[str] | None = None) -> str:
    """`rerun`: the command that ran (its --set overrides and flags), for the hints; `recipe run RECIPE` if None."""
    out = Path(plan.output_dir)
    rerun = rerun or ["recipe", "run", recipe_file]
    where = shlex.quote(str(out))
    rows = read_jsonl(out / "metrics.jsonl")
    minutes = f"{wall_s / 60:.1f} min" if wall_s >= 60 else f"{wall_s:.0f} s"
    if code == 0 and (out / "recipe.lock.yaml").is_file():
        what = "adapter" if (out / "adapter_config.json").is_file() else "model"
        lines = [f"finished in {minutes}: the {what} is in {out}"]
        loss, eval_loss = last_value(rows, "loss"), last_value(rows, "eval_loss")
        speed, train_loss = last_value(rows, "train_samples_per_second"), last_value(rows, "train_loss")
        numbers = [f"train_loss {train_loss:.4g} (TRL's mean over the steps trained)" if train_loss is not None else ""]
        logged_at = next((r.get("step") for r in reversed(rows) if "loss" in r), None)
        numbers += [f"last logged loss {loss:.4g} (step {logged_at})" if loss is not None else None]
        numbers += [f"eval loss {eval_loss:.4g}" if eval_loss is not None else None]
        numbers += [f"{speed:.3g} samples/s" if speed is not None else None]
        step = last_value(rows, "step")
        numbers += [f"{step} steps" if step is not None else None]
        if any(numbers):
            lines.append("  " + ", ".join(n for n in numbers if n))
        evaluated = headlines(read_results(out))
        if evaluated:
            lines.append("  evaluation: " + "; ".join(evaluated) + f"  ({results_path(out)})")
        if (out / "curves.png").is_file():
            lines.append(f"  curves: {out / 'curves.png'}")
        lines.append("next:")
        lines.append(f"  recipe chat {where}")
        peft_type = plan.peft["class"].rsplit(".", 1)[-1].removesuffix("Config").upper() if plan.peft else None
        if what == "adapter" and peft_type in MERGEABLE:  # the adapters `recipe merge` merges
            lines.append(f"  recipe merge {where}")
        if plan.recipe.evaluation.tasks:
            lines.append(f"  recipe eval {where}{'' if plan.recipe.evaluation.compare_base else ' --base'}")
        lines.append(f"  recipe diff {shlex.quote(recipe_file)} {where}    # what this run resolved")
        return "\n".join(lines)
    if code in STOPPED:
        last = complete_checkpoint(out)
        saved = f"the last complete checkpoint is {last}" if last else "no complete checkpoint was saved"
        again = shlex.join([*rerun, "--resume"]) if last else shlex.join([*rerun, "--overwrite"])
        return f"stopped after {minutes} ({saved}); continue with: {again}"
    return failure_summary(plan, recipe_file, code, minutes, bool(rows), rerun)


def complete_checkpoint(out: Path) -> Path | None:
    """The newest checkpoint of `out` that matches its completeness marker."""
    from runner.run.checkpoints import checkpoints, problem

    return next((p for p in reversed(checkpoints(out)) if problem(p) is None), None)


def failure_summary(
    plan: Plan, recipe_file: str, code: int, minutes: str, logged: bool, rerun: list[str] | None = None
) -> str:
    """The stage that failed, the error and where it was raised (from the training processes' failure records), or,
    for a process killed without a Python error, the last lines of its log; and where the full logs are."""
    from runner.run.failure import STAGES, last_log_lines, read_failures

    out = Path(plan.output_dir)
    failures = read_failures(out)
    logs = out / "logs"
    if failures:
        first = failures[0]  # the first rank to fail; the others usually fail because of it
        stage = STAGES.get(first["stage"], first["stage"])
        lines = [f"the run failed after {minutes}, while {stage} (exit code {code}, rank {first['rank']}):"]
        lines.append(f"  {first['error']}")
        lines += [f"    at {w}" for w in first["where"][-1:] if not first.get("whole")]
        if first.get("hint"):
            lines.append(f"  {first['hint']}")
        lines.append(f"  the full traceback is in {first['log']}")
    elif _status(out).get("reason"):  # said by recipe run or the training process, e.g. a full disk
        lines = [f"the run failed after {minutes}: {_status(out)['reason']}"]
    else:
        stage = "training" if logged else "loading the model and data (before the first step)"
        killed = f" (killed by signal {-code})" if code < 0 else " (killed by signal 9)" if code == 137 else ""
        lines = [f"the run failed after {minutes}, while {stage}: exit code {code}{killed}, no Python error recorded"]
        if code in (-9, 137):
            lines.append("  a process killed by signal 9 was often stopped by the out-of-memory killer")
        log = logs / "train-rank0.log"
        tail = last_log_lines(log)
        if tail:
            lines.append(f"  the last lines of {log}:")
            lines += [f"    {t[:300]}" for t in tail]
        elif logs.is_dir():
            lines.append(f"  the training processes' logs are in {logs}")
    last = complete_checkpoint(out)
    if last:
        again = shlex.join([*(rerun or ["recipe", "run", recipe_file]), "--resume"])
        lines.append(f"  the last complete checkpoint is {last}: continue with `{again}` once fixed")
    lines.append(
        f"  the launch files are in {shlex.quote(str(plan.launch_dir))}; `recipe plan {shlex.quote(recipe_file)}` "
        "shows what was decided"
    )
    return "\n".join(lines)


def _status(out: Path) -> dict:
    try:
        return json.loads((out / "status.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def write_status(plan: Plan, recipe_file: str, state: str, code: int | None = None, reason: str | None = None) -> None:
    """OUTPUT_DIR/status.json: running, then finished, stopped or failed (what `recipe runs` reads)."""
    recipe = str(Path(recipe_file).resolve())
    mark_status(Path(plan.output_dir), state, code=code, reason=reason, recipe=recipe, name=plan.recipe.name)


def mark_status(out: Path, state: str, *, code: int | None = None, reason: str | None = None, **fields) -> None:
    """Write status.json's state (with why, when given). The running state leaves room after its JSON so that the
    final state can be written over it in place when the disk has filled up meanwhile."""
    import errno
    import os
    import time

    from runner.common.files import cannot_write, write_atomic
    from runner.common.rundir import record_created

    path = Path(out) / "status.json"
    record_created(path.parent, path.name)
    status = _status(Path(out)) if state != "running" else {}
    status.update(state=state, **fields)
    status.setdefault("started", time.time())
    if state != "running":
        status.update(ended=time.time(), exit_code=code)
    if reason:
        status["reason"] = reason
    text = json.dumps(status, indent=1) + "\n" + (" " * STATUS_ROOM if state == "running" else "")
    try:
        write_atomic(path, text)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT) or not path.is_file() or path.is_symlink():
            raise
        status.setdefault("reason", cannot_write(Path(out), exc))
        data = (json.dumps(status, indent=1) + "\n").encode()
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
        try:  # the blocks are the file's already: no new space is needed
            os.write(fd, data)
            os.ftruncate(fd, len(data))
        finally:
            os.close(fd)
