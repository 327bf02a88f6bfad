"""What a finished run leaves in output.dir besides the model: metrics.jsonl, recipe.lock.yaml, README.md.

Nothing from the environment is written, so secrets (HF_TOKEN, WANDB_API_KEY, ...) never reach a file.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import yaml

from runner.common.cards import model_card
from runner.common.files import write_atomic
from runner.common.rundir import record_created
from runner.plan.types import Plan

from .quiet import open_no_follow

LOCKED_PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "deepspeed", "bitsandbytes", "datasets")


def installed_versions() -> dict[str, str | None]:
    from runner.plan.probe import probe_packages

    probe = probe_packages()
    return {name: probe[name] for name in LOCKED_PACKAGES}


try:
    from transformers import TrainerCallback as _Callback
except ImportError:  # only the training process constructs the callback
    _Callback = object  # type: ignore[misc,assignment]


class MetricsCallback(_Callback):  # type: ignore[misc,valid-type]
    """Appends every logged metrics dict, with its step and time, to OUTPUT_DIR/metrics.jsonl (rank 0 only).

    Each step's training, evaluation and summary records are written once: a run resumed from step N first drops
    the records after N (the steps it trains again) and skips one it already holds (the evaluation at N that
    `eval_on_start` repeats)."""

    def __init__(self, output_dir: Path, resumed_step: int | None = None):
        self.path = Path(output_dir) / "metrics.jsonl"
        record_created(self.path.parent, self.path.name)
        self.seen: set[tuple] = set()
        if resumed_step is not None and self.path.is_file():
            from runner.common.files import read_jsonl

            kept = [r for r in read_jsonl(self.path) if isinstance(r.get("step"), int) and r["step"] <= resumed_step]
            write_atomic(self.path, "".join(json.dumps(r, default=float) + "\n" for r in kept))
            self.seen = {(r["step"], record_kind(r)) for r in kept}

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        key = (state.global_step, record_kind(logs))
        if key in self.seen:
            return
        self.seen.add(key)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "step": state.global_step,
            "max_steps": state.max_steps,
            "epoch": state.epoch,
            "time": round(time.time(), 3),
            **logs,
        }
        with open_no_follow(self.path) as f:
            f.write(json.dumps(record, default=float) + "\n")


def record_kind(record: dict) -> str:
    """What a metrics record is: a training step's, an evaluation's, or the summary at the end of training."""
    if "train_runtime" in record:
        return "summary"
    return "eval" if any(k.startswith("eval_") for k in record) else "train"


def finish_run(plan: Plan, metrics: dict, into: Path | None = None) -> None:
    """The lock file and the model card of a finished run (rank 0, after the model is saved), written `into` the
    folder the result is staged in (runner/run/final.py) or the output directory."""
    out = Path(plan.output_dir)
    into = Path(into or out)
    from runner.common.curves import PNG_NAME

    record_created(out, "recipe.lock.yaml", "README.md", PNG_NAME)
    digest = hashlib.sha256(json.dumps(plan.resolved, sort_keys=True).encode()).hexdigest()
    lock = {
        "recipe": plan.resolved,
        "data_files": data_files(plan.recipe),
        "versions": installed_versions(),
        "content_hash": f"sha256:{digest}",
        "final_metrics": metrics,
    }
    header = "# What this run trained with; `recipe run` refuses to overwrite it without --overwrite.\n"
    write_atomic(into / "recipe.lock.yaml", header + yaml.safe_dump(lock, sort_keys=False, allow_unicode=True))
    write_atomic(into / "README.md", training_card(plan, metrics))
    from runner.common.curves import draw
    from runner.common.files import read_jsonl

    draw(out, read_jsonl(out / "metrics.jsonl"), f"{plan.recipe.name} (finished)")


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return f"sha256:{digest.hexdigest()}"


def data_files(recipe: Any) -> list[dict]:
    """The local data files the run read: absolute path, size and content hash (a folder: its files)."""
    from schemas.datasets import split_source

    out = []
    for entry in (*recipe.datasets.train, *recipe.datasets.eval):
        kind, rest, _ = split_source(entry.source)
        if kind == "hf":
            continue
        root = Path(rest)
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for f in files:
            if f.is_file():
                out.append({"path": str(f.resolve()), "size": f.stat().st_size, "hash": file_digest(f)})
    return out


def training_card(plan: Plan, metrics: dict) -> str:
    recipe, args = plan.recipe, plan.trainer["args"]
    adapter = recipe.adapter.kind + (f" on {recipe.quantization.method} weights" if recipe.is_quantized else "")
    hidden = ("output_dir", "deepspeed", "report_to", "run_name")
    hyper = ["| argument | value |", "|---|---|", *[f"| `{k}` | `{v}` |" for k, v in args.items() if k not in hidden]]
    if plan.peft:
        hyper += ["", f"PEFT ({plan.peft['class']}): `{json.dumps(plan.peft['args'])}`"]
    return model_card(
        recipe.name,
        [
            recipe.description or "",
            "",
            f"- Base model: `{recipe.model.name_or_path}`",
            f"- Objective: `{recipe.objective.kind}` ({plan.trainer['class']})",
            f"- Adapter: {adapter}",
        ],
        [
            ("Data", [f"- `{d.source}` (split `{d.split}`, format `{d.format}`)" for d in recipe.datasets.train]),
            ("Hyperparameters", hyper),
            ("Final evaluation", [f"- `{k}`: {v}" for k, v in metrics.items()]),
        ],
        "Trained with `recipe`; the exact recipe and library versions are in `recipe.lock.yaml`.",
    )
