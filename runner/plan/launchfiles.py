"""Generated DeepSpeed JSON, accelerate config, `accelerate launch` argv and the Slurm script.

Every number is explicit (no "auto"): what runs is what `recipe plan` showed. The
DeepSpeed batch, precision and clipping values equal the TrainingArguments the
runner passes, which transformers' DeepSpeed integration requires.
"""

from __future__ import annotations

import shlex
from typing import Any, Optional

from .architecture import Architecture

DEFAULT_PORT = 29500


def cpu_adam(offload: str) -> bool:
    """ZeRO-Offload of the optimizer states runs DeepSpeed's CPU Adam (its settings equal TrainingArguments' AdamW)."""
    return offload in ("optimizer", "all")


def deepspeed_config(
    *,
    stage: int,
    offload: str,
    precision: str,
    micro_batch_size: int,
    gradient_accumulation_steps: int,
    world_size: int,
    max_grad_norm: float,
    arch: Optional[Architecture],
    learning_rate: float,
    weight_decay: float,
) -> dict[str, Any]:
    zero: dict[str, Any] = {"stage": stage}
    if stage >= 1:
        hidden = arch.hidden_size if arch else None
        # transformers' "auto" formulas for these buckets, computed here from the model's hidden size.
        bucket = hidden * hidden if hidden else 500_000_000
        zero.update(overlap_comm=True, contiguous_gradients=True, reduce_bucket_size=bucket)
        if stage <= 2:
            zero.update(allgather_partitions=True, allgather_bucket_size=bucket, reduce_scatter=True)
        if stage == 3:
            zero.update(
                stage3_prefetch_bucket_size=int(0.9 * bucket),
                stage3_param_persistence_threshold=10 * hidden if hidden else 100_000,
                stage3_max_live_parameters=1_000_000_000,
                stage3_max_reuse_distance=1_000_000_000,
                stage3_gather_16bit_weights_on_model_save=True,
            )
        if offload in ("optimizer", "all"):
            zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
        if offload == "all":
            zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    config: dict[str, Any] = {
        "train_batch_size": micro_batch_size * gradient_accumulation_steps * world_size,
        "train_micro_batch_size_per_gpu": micro_batch_size,
        "gradient_accumulation_steps": gradient_accumulation_steps,
        "gradient_clipping": max_grad_norm,
        "zero_optimization": zero,
        "bf16": {"enabled": precision == "bf16"},
        "fp16": {
            "enabled": precision == "fp16",
            "loss_scale": 0,  # dynamic loss scaling
            "initial_scale_power": 16,
            "loss_scale_window": 1000,
            "hysteresis": 2,
            "min_loss_scale": 1,
        },
        "steps_per_print": 1_000_000_000,
        "wall_clock_breakdown": False,
    }
    if cpu_adam(offload):
        config["optimizer"] = {
            "type": "AdamW",
            "params": {"lr": learning_rate, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": weight_decay},
        }
    return config


def accelerate_config(
    *,
    world_size: int,
    nodes: int,
    gpus_per_node: int,
    precision: str,
    on_cpu: bool,
    deepspeed_file: Optional[str],
    zero: Optional[int],
) -> dict[str, Any]:
    """accelerate's config file. With DeepSpeed, stage/offload/clipping/accumulation/precision live only in its file."""
    config: dict[str, Any] = {
        "compute_environment": "LOCAL_MACHINE",
        "debug": False,
        "num_machines": nodes,
        "num_processes": world_size,
        "machine_rank": 0,
        "main_training_function": "main",
        "rdzv_backend": "static",
        "same_network": True,
        "use_cpu": on_cpu,
        "downcast_bf16": "no",
    }
    if deepspeed_file is not None:
        config["distributed_type"] = "DEEPSPEED"
        ds: dict[str, Any] = {"deepspeed_config_file": deepspeed_file, "zero3_init_flag": zero == 3}
        if nodes > 1:
            ds["deepspeed_multinode_launcher"] = "standard"
        config["deepspeed_config"] = ds
    else:
        config["mixed_precision"] = {"bf16": "bf16", "fp16": "fp16"}.get(precision, "no")
        if world_size == 1:
            config["distributed_type"] = "NO"
        else:
            # accelerate's MULTI_CPU launcher needs mpirun; its MULTI_GPU launcher (torchrun) starts CPU
            # processes just as well, and they join with gloo because the TrainingArguments say use_cpu.
            config["distributed_type"] = "MULTI_GPU"
            config["use_cpu"] = False
    if nodes > 1:
        config["main_process_port"] = DEFAULT_PORT
    elif world_size > 1:
        # one node: accelerate picks a free port for each launch (0), so two runs on one machine never meet on
        # 29500 (its own fallback when the port is taken checks first and binds later: two launches can race)
        config["main_process_port"] = 0
    return config


def launch_argv(*, launch_dir: str, nodes: int, deepspeed: bool) -> list[str]:
    """`accelerate launch` for one node; multi-node values come from the environment (see launch.sh / Slurm)."""
    # --quiet: a failed single-process or DeepSpeed launch exits 1 instead of adding the launcher's own traceback
    # to the training process's account (runner/run/failure.py)
    argv = ["accelerate", "launch", "--config_file", f"{launch_dir}/accelerate.yaml", "--quiet"]
    if nodes > 1:
        argv += [
            "--num_machines",
            str(nodes),
            "--machine_rank",
            "${MACHINE_RANK}",
            "--main_process_ip",
            "${MAIN_PROCESS_IP}",
            "--main_process_port",
            "${MAIN_PROCESS_PORT:-%d}" % DEFAULT_PORT,
        ]
        if deepspeed:
            argv += ["--deepspeed_multinode_launcher", "standard"]
    argv += ["-m", "runner.run.train", f"{launch_dir}/plan.json"]
    return argv


def shell_command(argv: list[str]) -> str:
    """The argv as one shell line; ${VAR} placeholders stay expandable."""
    return " ".join(a if a.startswith("${") else shlex.quote(a) for a in argv)


def launch_script(argv: list[str], nodes: int) -> str:
    lines = [
        "#!/usr/bin/env bash",
        "# Generated by `recipe run`; starts this node's share of the run.",
        "set -euo pipefail",
    ]
    if nodes > 1:
        lines += [
            # no apostrophe inside ${...:?...}: bash would read it as an opening quote
            ': "${MACHINE_RANK:?set MACHINE_RANK to the rank of this node, 0 to %d}"' % (nodes - 1),
            ': "${MAIN_PROCESS_IP:?set MAIN_PROCESS_IP to the address of the rank-0 node}"',
        ]
    lines.append("exec " + shell_command(argv))
    return "\n".join(lines) + "\n"


def slurm_script(
    *, name: str, argv: list[str], nodes: int, gpus_per_node: int, launch_dir: str, cpus_per_task: int = 16
) -> str:
    """An sbatch script: one `accelerate launch` per node through srun, rank and master address from Slurm."""
    inner = shell_command(argv).replace("${MACHINE_RANK}", "$SLURM_NODEID")
    return "\n".join(
        [
            "#!/usr/bin/env bash",
            f"#SBATCH --job-name={name}",
            f"#SBATCH --nodes={nodes}",
            "#SBATCH --ntasks-per-node=1",
            f"#SBATCH --gpus-per-node={gpus_per_node}",
            f"#SBATCH --cpus-per-task={cpus_per_task}",
            f"#SBATCH --output={launch_dir}/slurm-%j.out",
            "# Generated by `recipe run --slurm`. Submit with: sbatch " + f"{launch_dir}/slurm.sbatch",
            "set -euo pipefail",
            'export MAIN_PROCESS_IP="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"',
            f'export MAIN_PROCESS_PORT="${{MAIN_PROCESS_PORT:-{DEFAULT_PORT}}}"',
            f"srun --nodes={nodes} --ntasks-per-node=1 --kill-on-bad-exit=1 bash -c {shlex.quote(inner)}",
            "",
        ]
    )
