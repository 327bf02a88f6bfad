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

from .launch import write_atomic

LOCKED_PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "deepspeed", "bitsandbytes", "datasets")


def installed_versions() -> dict[str, str | None]:
    from .plan.probe import probe_packages

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

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        record = {"step": state.global_step, "epoch": state.epoch, "time": round(time.time(), 3), **logs}
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, default=float) + "\n")


def finish_run(recipe: Any, plan: dict, resolved: Path, metrics: dict) -> None:
    out = Path(recipe.output_dir)
    recipe_data = plan["recipe"]
    digest = hashlib.sha256(json.dumps(recipe_data, sort_keys=True).encode()).hexdigest()
    lock = {"recipe": recipe_data, "versions": installed_versions(), "content_hash": f"sha256:{digest}", "final_metrics": metrics}
    write_atomic(out / "recipe.lock.yaml", "# What this run trained with; `recipe run` refuses to overwrite it without --overwrite.\n"
                 + yaml.safe_dump(lock, sort_keys=False, allow_unicode=True))
    write_atomic(out / "README.md", model_card(recipe, plan, metrics))


def model_card(recipe: Any, plan: dict, metrics: dict) -> str:
    args = plan["trainer"]["args"]
    data = "\n".join(f"- `{d.source}` (split `{d.split}`, format `{d.format}`)" for d in recipe.datasets.train)
    adapter = recipe.adapter.kind + (f" on {recipe.quantization.method} weights" if recipe.is_quantized else "")
    lines = [
        f"# {recipe.name}", "", recipe.description or "", "",
        f"- Base model: `{recipe.model.name_or_path}`",
        f"- Objective: `{recipe.objective.kind}` ({plan['trainer']['class']})",
        f"- Adapter: {adapter}", "", "## Data", "", data, "", "## Hyperparameters", "",
        "| argument | value |", "|---|---|",
        *[f"| `{k}` | `{v}` |" for k, v in args.items() if k not in ("output_dir", "deepspeed", "report_to", "run_name")],
    ]
    if plan["peft"]:
        lines += ["", f"PEFT ({plan['peft']['class']}): `{json.dumps(plan['peft']['args'])}`"]
    if metrics:
        lines += ["", "## Final evaluation", "", *[f"- `{k}`: {v}" for k, v in metrics.items()]]
    lines += ["", "Trained with `recipe`; the exact recipe and library versions are in `recipe.lock.yaml`.", ""]
    return "\n".join(lines)
