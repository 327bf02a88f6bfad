"""`resolve(recipe, probe) -> Plan`: a pure function that decides and explains.

It imports no torch and reads nothing but shipped tables and, for a model given as a local directory, its
config.json. What is installed comes in through `probe` (`runner.plan.probe.probe_packages()` in the commands), so
tests can state it. Each family of decisions has its module; this one calls them in order and renders the result:

  precision.py     the arithmetic, the load dtype, TF32, bitsandbytes' compute dtype and storage
  capabilities.py  attention, packed rows and kernels, from the model-type table (modeltypes.py)
  fit.py           the memory search: ZeRO stage, offload, checkpointing, micro batch; the batch arithmetic
  training.py      schedules, checkpoint retention, the baseline evaluation, the loss's tokens
  arguments.py, launchfiles.py, resolved.py   render those decisions (TRL/PEFT/bnb kwargs, DeepSpeed/accelerate
                   files, the resolved recipe) and decide nothing
"""

from __future__ import annotations

from typing import Optional

from schemas import Recipe
from schemas.objectives import facts

from . import arguments, launchfiles
from .architecture import Architecture, find_architecture
from .capabilities import decide_attention, decide_kernels, decide_padding_free, mamba_problems
from .fit import Fit, explain_fit, memory_search
from .precision import compute_dtype, decide_precision, decide_quant_storage, load_dtype
from .resolved import resolved_recipe
from .training import decide_loop
from .types import Decision, Plan, Problem


def resolve(recipe: Recipe, probe: Optional[dict[str, Optional[str]]] = None) -> Plan:
    """Decide everything the run needs, explain each decision, and report what cannot work."""
    r, probe = recipe, probe or {}
    hw = r.hardware.resolved_profile()
    world = r.hardware.world_size
    decisions: list[Decision] = []
    problems: list[Problem] = []
    decisions.append(
        Decision("world_size", world, f"{r.hardware.gpus_per_node} process(es) per node × {r.hardware.nodes} node(s)")
    )

    precision = decide_precision(r, hw, decisions, problems)
    arch, arch_source = find_architecture(r.model.name_or_path)
    attention = decide_attention(r, hw, precision, arch, probe, decisions, problems)
    padding_free = decide_padding_free(r, hw, arch, attention, decisions, problems)
    kernels = decide_kernels(r, hw, arch, probe, decisions, problems)
    if arch is not None and arch.is_mamba:
        problems += mamba_problems(r)
    fit = memory_search(
        r, hw, arch, arch_source, precision=precision, attention=attention, padding_free=padding_free,
        kernels=kernels, decisions=decisions, problems=problems,
    )  # fmt: skip
    dtype, dtype_why = load_dtype(r, precision, fit.zero)  # for full fine-tuning it depends on the ZeRO stage
    decisions.append(Decision("model dtype", dtype, dtype_why))
    accumulation = explain_fit(r, hw, world, fit, arch is not None, decisions)
    compute = compute_dtype(r, precision, decisions)
    loop = decide_loop(r, hw, decisions)
    _explain_optimizer(r, fit, decisions)
    storage = decide_quant_storage(r, fit.zero, dtype, decisions, problems)

    launch_dir = f"{r.output_dir}/launch"
    ds_file = f"{launch_dir}/ds_config.json" if fit.zero is not None else None
    gc, on_cpu = fit.gradient_checkpointing, not hw.is_gpu
    step = arguments.Step(precision, fit.micro_batch_size, accumulation, gc, world, on_cpu, ds_file, kernels)
    objective = facts(r.objective.kind)
    return Plan(
        recipe=r,
        resolved=resolved_recipe(
            r,
            precision=precision,
            dtype=dtype,
            attention=attention,
            fit=fit,
            loop=loop,
            compute_dtype=compute,
            quant_storage=storage,
            padding_free=padding_free,
            kernels=kernels,
        ),  # fmt: skip
        world_size=world,
        precision=precision,
        dtype=dtype,
        attention=attention,
        micro_batch_size=fit.micro_batch_size,
        gradient_accumulation_steps=accumulation,
        gradient_checkpointing=fit.gradient_checkpointing,
        zero=fit.zero,
        offload=fit.offload,
        trainer={
            "class": objective.trainer,
            "config_class": objective.config,
            "args": arguments.trainer_args(r, r.output_dir, step, loop),
        },
        peft=arguments.peft_args(r),
        quantization=arguments.quantization_args(r, compute, storage),
        deepspeed=_deepspeed(r, fit, step, arch),
        accelerate=_accelerate(r, step, fit.zero),
        launch=launchfiles.launch_argv(launch_dir=launch_dir, nodes=r.hardware.nodes, deepspeed=fit.zero is not None),
        memory=fit.memory,
        hardware=hw,
        architecture=arch,
        output_dir=r.output_dir,
        launch_dir=launch_dir,
        decisions=decisions,
        problems=problems,
    )


def _explain_optimizer(r: Recipe, fit: Fit, out: list[Decision]) -> None:
    """With optimizer states offloaded, DeepSpeed's CPU Adam runs the recipe's AdamW update."""
    if fit.zero is not None and launchfiles.cpu_adam(fit.offload):
        out.append(
            Decision(
                "optimizer",
                "DeepSpeed CPU AdamW",
                f"optimizer states are offloaded to CPU memory: DeepSpeed's CPU Adam runs the AdamW update of "
                f"training.optimizer {r.training.optimizer} (same betas, eps, weight decay) there",
            )
        )


def _accelerate(r: Recipe, step: arguments.Step, zero: Optional[int]) -> dict:
    """accelerate's config file."""
    return launchfiles.accelerate_config(
        world_size=step.world_size,
        nodes=r.hardware.nodes,
        gpus_per_node=r.hardware.gpus_per_node,
        precision=step.precision,
        on_cpu=step.on_cpu,
        deepspeed_file=step.deepspeed_config,
        zero=zero,
    )


def _deepspeed(r: Recipe, fit: Fit, step: arguments.Step, arch: Optional[Architecture]) -> Optional[dict]:
    """The DeepSpeed JSON, or None without DeepSpeed."""
    if fit.zero is None:
        return None
    return launchfiles.deepspeed_config(
        stage=fit.zero,
        offload=fit.offload,
        precision=step.precision,
        micro_batch_size=step.micro_batch_size,
        gradient_accumulation_steps=step.gradient_accumulation_steps,
        world_size=step.world_size,
        max_grad_norm=r.training.max_grad_norm,
        arch=arch,
        learning_rate=r.training.learning_rate,
        weight_decay=r.training.weight_decay,
    )
