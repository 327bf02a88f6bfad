"""What `recipe run` says when the run ends: where the result is, its final numbers and what to do next, or, when it
failed, the stage that failed and where its files are. Read from the files the run wrote (no training imports)."""

from __future__ import annotations

import json
from pathlib import Path

from runner.common.evalresults import headlines, read_results, results_path
from runner.common.files import last_value, read_jsonl
from runner.common.trained import MERGEABLE
from runner.plan import Plan


def summary(plan: Plan, recipe_file: str, code: int, wall_s: float) -> str:
    out = Path(plan.output_dir)
    rows = read_jsonl(out / "metrics.jsonl")
    minutes = f"{wall_s / 60:.1f} min" if wall_s >= 60 else f"{wall_s:.0f} s"
    if code == 0 and (out / "recipe.lock.yaml").is_file():
        what = "adapter" if (out / "adapter_config.json").is_file() else "model"
        lines = [f"finished in {minutes}: the {what} is in {out}"]
        loss, eval_loss = last_value(rows, "loss"), last_value(rows, "eval_loss")
        speed = last_value(rows, "train_samples_per_second")
        numbers = [f"train loss {loss:.4g}" if loss is not None else None]
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
        lines.append(f"  recipe chat {out}")
        peft_type = plan.peft["class"].rsplit(".", 1)[-1].removesuffix("Config").upper() if plan.peft else None
        if what == "adapter" and peft_type in MERGEABLE:  # the adapters `recipe merge` merges
            lines.append(f"  recipe merge {out}")
        if plan.recipe.evaluation.tasks:
            lines.append(f"  recipe eval {out}{'' if plan.recipe.evaluation.compare_base else ' --base'}")
        lines.append(f"  recipe diff {recipe_file} {out}    # what this run resolved")
        return "\n".join(lines)
    if code in (130, 143):
        checkpoints = sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
        where = f"the last checkpoint is {checkpoints[-1]}" if checkpoints else "no checkpoint was saved"
        return f"stopped after {minutes} ({where}); continue with: recipe run {recipe_file} --resume"
    return failure_summary(plan, recipe_file, code, minutes, bool(rows))


def failure_summary(plan: Plan, recipe_file: str, code: int, minutes: str, logged: bool) -> str:
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
        lines += [f"    at {w}" for w in first["where"][-1:]]
        if first.get("hint"):
            lines.append(f"  {first['hint']}")
        lines.append(f"  the full traceback is in {first['log']}")
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
    checkpoints = sorted(out.glob("checkpoint-*"))
    if checkpoints:
        lines.append(f"  checkpoints in {out}: continue with `recipe run {recipe_file} --resume` once fixed")
    lines.append(f"  the launch files are in {plan.launch_dir}; `recipe plan {recipe_file}` shows what was decided")
    return "\n".join(lines)


def write_status(plan: Plan, recipe_file: str, state: str, code: int | None = None) -> None:
    """OUTPUT_DIR/status.json: running, then finished, stopped or failed (what `recipe runs` reads)."""
    import time

    from runner.common.files import write_atomic
    from runner.common.rundir import record_created

    path = Path(plan.output_dir) / "status.json"
    record_created(path.parent, path.name)
    status = json.loads(path.read_text(encoding="utf-8")) if state != "running" and path.is_file() else {}
    status.update(state=state, recipe=str(Path(recipe_file).resolve()), name=plan.recipe.name)
    status.setdefault("started", time.time())
    if state != "running":
        status.update(ended=time.time(), exit_code=code)
    write_atomic(path, json.dumps(status, indent=1) + "\n")
