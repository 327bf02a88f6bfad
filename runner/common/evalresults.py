"""OUTPUT_DIR/eval/results.json: what `recipe eval` measured, read by the run summary and `recipe runs` too.

    {"version": 1, "models": {"trained": {"model": ..., "tasks": {NAME: {"kind", "metrics", "main", "rows",
     "seconds", "evaluated", "samples"}}}, "base": {...}}}

`trained` is the run's output (adapter or model), `base` the model it started from. A task evaluated again replaces
its entry; the others stay. Imports nothing heavy.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

from runner.common.files import write_atomic

VERSION = 1
MODELS = ("base", "trained")


def results_path(output_dir: str | Path) -> Path:
    return Path(output_dir) / "eval" / "results.json"


def read_results(output_dir: str | Path) -> dict:
    """The results file, or an empty one when there is none (or it cannot be read)."""
    path = results_path(output_dir)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = None
    if isinstance(data, dict) and isinstance(data.get("models"), dict):
        return data
    return {"version": VERSION, "models": {}}


def record(output_dir: str | Path, models: dict[str, tuple[str, dict[str, dict]]]) -> dict:
    """Merge each model's task results ({model: (description, {task: entry})}) into the file, written atomically
    once; returns the file's content."""
    data = read_results(output_dir)
    for model, (description, tasks) in models.items():
        entry = data["models"].setdefault(model, {"tasks": {}})
        entry["model"] = description
        entry.setdefault("tasks", {}).update(tasks)
    from runner.common.rundir import record_created

    record_created(Path(output_dir), "eval")
    write_atomic(results_path(output_dir), json.dumps(data, indent=1) + "\n")
    return data


def _number(value: Optional[float]) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.4g}"


def rows(data: dict, tasks: Optional[list[str]] = None) -> list[tuple[str, str, Optional[float], Optional[float]]]:
    """(task, metric, base, trained) for every metric of every task, in the order the tasks ran."""
    models = data.get("models", {})
    names: list[str] = []
    for model in MODELS:
        names += [n for n in models.get(model, {}).get("tasks", {}) if n not in names]
    out = []
    for name in names if tasks is None else [n for n in names if n in tasks]:
        entries = {m: models.get(m, {}).get("tasks", {}).get(name) for m in MODELS}
        metrics: list[str] = []
        for entry in entries.values():
            metrics += [k for k in (entry or {}).get("metrics", {}) if k not in metrics]
        for metric in metrics:
            values = [(entries[m] or {}).get("metrics", {}).get(metric) for m in MODELS]
            out.append((name, metric, values[0], values[1]))
    return out


def results_table(data: dict, tasks: Optional[list[str]] = None) -> str:
    """TASK, METRIC, BASE, TRAINED and CHANGE columns (BASE and CHANGE only when the base was evaluated)."""
    found = rows(data, tasks)
    if not found:
        return "no evaluation results"
    with_base = any(b is not None for _, _, b, _ in found)
    header = ["TASK", "METRIC"] + (["BASE"] if with_base else []) + ["TRAINED"] + (["CHANGE"] if with_base else [])
    lines = []
    for task, metric, base, trained in found:
        line = [task, metric] + ([_number(base)] if with_base else []) + [_number(trained)]
        if with_base:
            line.append(f"{trained - base:+.4g}" if base is not None and trained is not None else "-")
        lines.append(line)
    widths = [max(len(x[i]) for x in [header, *lines]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in [header, *lines])


def headlines(data: dict) -> list[str]:
    """One short line per task: its headline metric after training (and before, when the base was evaluated)."""
    models = data.get("models", {})
    trained = models.get("trained", {}).get("tasks", {})
    base = models.get("base", {}).get("tasks", {})
    out = []
    for name, entry in trained.items():
        main = entry.get("main")
        value = entry.get("metrics", {}).get(main)
        if value is None:
            continue
        before = base.get(name, {}).get("metrics", {}).get(main)
        out.append(f"{name} {main} {_number(value)}" + (f" (base {_number(before)})" if before is not None else ""))
    return out
