"""`recipe runs [DIR]`: the runs under an outputs directory, and one run's curves, from the files runs write
(status.json, metrics.jsonl, recipe.lock.yaml, the output lock, checkpoints). Imports nothing heavy."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Optional

from runner.common.curves import draw
from runner.common.evalresults import headlines, read_results
from runner.common.files import last_value, read_jsonl
from runner.common.lock import LOCK_NAME, lock_state

SPARK = "▁▂▃▄▅▆▇█"
CURVES = ("loss", "eval_loss", "rewards/accuracies", "eval_rewards/accuracies", "reward", "learning_rate")


@dataclass
class RunInfo:
    path: Path
    state: str
    name: str
    step: Optional[int] = None
    max_steps: Optional[int] = None
    loss: Optional[float] = None
    eval: dict = field(default_factory=dict)
    started: Optional[float] = None
    ended: Optional[float] = None
    rows: list = field(default_factory=list)
    evaluated: list = field(default_factory=list)  # `recipe eval`'s headline per task (runner.common.evalresults)


def is_run(path: Path) -> bool:
    return path.is_dir() and any(
        (path / f).exists() for f in ("status.json", "metrics.jsonl", "recipe.lock.yaml", "launch", LOCK_NAME)
    )


def read_run(path: Path) -> RunInfo:
    status = {}
    if (path / "status.json").is_file():
        try:
            status = json.loads((path / "status.json").read_text(encoding="utf-8"))
        except ValueError:
            status = {}
    rows = read_jsonl(path / "metrics.jsonl")
    held = lock_state(path)
    state = held or status.get("state")
    if held is None and state in (None, "running"):  # no status, or a status no live process stands behind
        if (path / "recipe.lock.yaml").is_file():
            state = "finished"
        else:
            state = "unfinished" if rows or any(path.glob("checkpoint-*")) else "not started"
    name = status.get("name") or path.name
    last = partial(last_value, rows)
    evals = {k: v for r in rows for k, v in r.items() if k.startswith("eval_") and isinstance(v, (int, float))}
    times = [r["time"] for r in rows if "time" in r]
    return RunInfo(
        path=path,
        state=state,
        name=name,
        step=last("step"),
        max_steps=last("max_steps"),
        loss=last("loss"),
        eval={k: evals[k] for k in ("eval_loss", "eval_rewards/accuracies", "eval_accuracy") if k in evals},
        started=status.get("started") or (times[0] if times else None),
        ended=status.get("ended") or (times[-1] if times and state != "running" else None),
        rows=rows,
        evaluated=headlines(read_results(path)),
    )


def _duration(info: RunInfo) -> str:
    if info.started is None:
        return "-"
    seconds = (info.ended or time.time()) - info.started
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def runs_table(root: Path) -> str:
    runs = [read_run(p) for p in sorted(root.iterdir()) if is_run(p)] if root.is_dir() else []
    if not runs:
        return f"no runs under {root}"
    header = ["STATE", "NAME", "STEP", "LOSS", "EVAL", "STARTED", "DURATION", "DIRECTORY"]
    rows = []
    for r in runs:
        step = "-" if r.step is None else f"{r.step}/{r.max_steps}" if r.max_steps else str(r.step)
        evals = ", ".join([f"{k.removeprefix('eval_')} {v:.4g}" for k, v in r.eval.items()] + r.evaluated) or "-"
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.started)) if r.started else "-"
        loss = "-" if r.loss is None else f"{r.loss:.4g}"
        rows.append([r.state, r.name, step, loss, evals, started, _duration(r), str(r.path)])
    widths = [max(len(str(x[i])) for x in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in [header, *rows])


def sparkline(values: list[float], width: int = 60) -> str:
    if len(values) > width:  # resample to the width
        values = [values[int(i * len(values) / width)] for i in range(width)]
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    return "".join(SPARK[min(len(SPARK) - 1, int((v - low) / span * (len(SPARK) - 1) + 0.5))] for v in values)


def plot(path: Path) -> Optional[Path]:
    """OUTPUT_DIR/curves.png (runner.common.curves), titled with the run's name and state."""
    info = read_run(path)
    return draw(path, info.rows, f"{info.name} ({info.state})")


def curves(path: Path) -> str:
    info = read_run(path)
    lines = [f"{info.name}: {info.state}, step {info.step}/{info.max_steps}, {_duration(info)} ({path})"]
    for key in CURVES:
        points = [(r["step"], r[key]) for r in info.rows if isinstance(r.get(key), (int, float))]
        if len(points) < 2:
            continue
        values = [v for _, v in points]
        lines.append(
            f"  {key:<24} {sparkline(values)}  {values[0]:.4g} -> {values[-1]:.4g} "
            f"(min {min(values):.4g}, steps {points[0][0]}-{points[-1][0]})"
        )
    if len(lines) == 1:
        lines.append("  no metrics logged yet")
    return "\n".join(lines)
