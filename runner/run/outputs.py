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
    """Appends every logged metrics dict, with its step and time, to OUTPUT_DIR/metrics.jsonl (rank 0 only)."""

    def __init__(self, output_dir: Path):
        self.path = Path(output_dir) / "metrics.jsonl"
        record_created(self.path.parent, self.path.name)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
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


def finish_run(plan: Plan, metrics: dict) -> None:
    """The lock file and the model card of a finished run (rank 0, after the model is saved)."""
    out = Path(plan.output_dir)
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
    write_atomic(out / "recipe.lock.yaml", header + yaml.safe_dump(lock, sort_keys=False, allow_unicode=True))
    write_atomic(out / "README.md", training_card(plan, metrics))
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
