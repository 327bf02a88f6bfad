"""A DeepSpeed JSON the source names (a file, a shipped name, or inline): its ZeRO stage and offload become the
recipe's `hardware`; every other key is reported, since the plan writes its own DeepSpeed file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .report import DROPPED, NOT_NEEDED
from .translation import ImportRefused, Translation

DEEPSPEED_LOGGING = (
    "wall_clock_breakdown",
    "steps_per_print",
    "dump_state",
    "flops_profiler",
    "tensorboard",
    "comms_logger",
    "csv_monitor",
    "wandb",
)

# DeepSpeed files shipped in Axolotl's deepspeed_configs/ and LLaMA-Factory's examples/deepspeed/: (stage, offload).
SHIPPED_DEEPSPEED = {
    "zero1.json": (1, "none"),
    "zero1_torch_compile.json": (1, "none"),
    "zero2.json": (2, "none"),
    "zero2_torch_compile.json": (2, "none"),
    "zero3.json": (3, "none"),
    "zero3_bf16.json": (3, "none"),
    "zero3_bf16_cpuoffload_all.json": (3, "all"),
    "zero3_bf16_cpuoffload_params.json": (3, "all"),
    "ds_z0_config.json": (0, "none"),
    "ds_z2_config.json": (2, "none"),
    "ds_z2_offload_config.json": (2, "optimizer"),
    "ds_z3_config.json": (3, "none"),
    "ds_z3_offload_config.json": (3, "all"),
}


def _flatten(config: dict, prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for k, v in config.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out += _flatten(v, name + ".")
        else:
            out.append((name, v))
    return out


def deepspeed_file(t: Translation, key: str) -> None:
    """A DeepSpeed JSON named by path: its ZeRO stage and offload become `hardware`; every other key is
    reported (the plan writes the DeepSpeed file itself)."""
    value = t.take(key)
    if value is None:
        return
    if isinstance(value, dict):
        config, shown = value, "(inline)"
    else:
        path = t.local_path(str(value))
        if path is None:
            _shipped_deepspeed_file(t, key, str(value))
            return
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ImportRefused(f"{key}: {path} cannot be read as JSON: {exc}") from None
        shown = str(value)
    zero = config.get("zero_optimization") or {}
    stage = zero.get("stage", 0)
    t.changed(
        f"{key}: zero_optimization.stage",
        "hardware.zero",
        stage,
        f"from {shown}; the plan writes its own DeepSpeed file with this stage",
    )
    offload = "none"
    if (zero.get("offload_optimizer") or {}).get("device") in ("cpu", "nvme"):
        offload = "optimizer"
    if (zero.get("offload_param") or {}).get("device") in ("cpu", "nvme"):
        offload = "all"
    t.mapped(f"{key}: offload", "hardware.offload", offload, "offload_optimizer / offload_param devices")
    if "nvme" in json.dumps(zero):
        t.dropped(f"{key}: nvme", "offload to NVMe is not planned: the recipe offloads to CPU memory", "nvme")
    for name, item in _flatten(config):
        if name.startswith("zero_optimization.offload_") or name == "zero_optimization.stage":
            continue
        if item == "auto":
            why = "`auto`: the plan writes the number it decided"
        elif name.split(".")[0] in ("bf16", "fp16", "train_batch_size", "train_micro_batch_size_per_gpu"):
            why = "the plan writes precision and batch sizes from the recipe"
        elif name in ("gradient_accumulation_steps", "gradient_clipping", "zero_allow_untested_optimizer"):
            why = "the plan writes it from the recipe's training section"
        elif name.split(".")[0] in DEEPSPEED_LOGGING:
            why = "DeepSpeed's own logging and profiling, not training"
        else:
            t.row(f"{key}: {name}", DROPPED, "", item, "DeepSpeed tuning the plan does not carry over")
            continue
        t.row(f"{key}: {name}", NOT_NEEDED, "", item, why)


def _shipped_deepspeed_file(t: Translation, key: str, value: str) -> None:
    """A DeepSpeed file that is not here but is one the peers ship: its stage and offload are known."""
    name = Path(value).name
    if name not in SHIPPED_DEEPSPEED:
        raise ImportRefused(
            f"{key}: {value} does not exist (looked beside {t.origin.name} and in the current directory); copy "
            "the file here, or drop the key and set hardware.zero in the recipe after import"
        )
    stage, offload = SHIPPED_DEEPSPEED[name]
    t.changed(
        key,
        "hardware.zero",
        stage,
        f"{value} is not here: it is a file the peers ship, with ZeRO stage {stage} and offload `{offload}`; "
        "the plan writes its own DeepSpeed file",
    )
    t.put("hardware.offload", offload)
