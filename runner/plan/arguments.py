"""The exact keyword arguments for TRL's config classes, PEFT's adapter configs and BitsAndBytesConfig.

Names are the libraries' own, verbatim, so a reader can check them against their
docs; `tests/test_plan.py` checks every key against the installed classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from schemas import Recipe
from schemas.adapters import adapter_facts
from schemas.objectives import facts

from .training import Loop


@dataclass(frozen=True)
class Step:
    """The decided shape of one optimizer step and where it runs, as the TRL config needs it."""

    precision: str  # bf16 | fp16 | fp32
    micro_batch_size: int
    gradient_accumulation_steps: int
    gradient_checkpointing: bool
    world_size: int
    on_cpu: bool
    deepspeed_config: Optional[str]  # the ds_config.json path, or None without DeepSpeed
    kernels: str  # liger | none


def trainer_args(r: Recipe, output_dir: str, step: Step, loop: Loop) -> dict[str, Any]:
    """Keyword arguments of the objective's TRL config class (a transformers.TrainingArguments subclass), rendered
    from what the plan decided."""
    t, kind = r.training, facts(r.objective.kind)
    args: dict[str, Any] = {
        "output_dir": output_dir,
        "num_train_epochs": t.epochs,
        "max_steps": t.max_steps if t.max_steps is not None else -1,
        "per_device_train_batch_size": step.micro_batch_size,
        "per_device_eval_batch_size": step.micro_batch_size,
        "gradient_accumulation_steps": step.gradient_accumulation_steps,
        "learning_rate": t.learning_rate,
        "lr_scheduler_type": t.lr_scheduler,
        "lr_scheduler_kwargs": dict(t.lr_scheduler_kwargs),
        # transformers 5 takes a ratio as a float below 1 in warmup_steps
        "warmup_steps": t.warmup_steps if t.warmup_steps is not None else (t.warmup_ratio or 0),
        "weight_decay": t.weight_decay,
        "optim": t.optimizer,
        "max_grad_norm": t.max_grad_norm,
        "bf16": step.precision == "bf16",
        "fp16": step.precision == "fp16",
        # transformers 5 names gradient checkpointing `activation_checkpointing` (the old name is a deprecated alias)
        "activation_checkpointing": step.gradient_checkpointing,
        "activation_checkpointing_kwargs": {"use_reentrant": False} if step.gradient_checkpointing else None,
        "logging_steps": t.logging_every,
        **loop.eval.args("eval"),
        "eval_on_start": loop.eval_on_start,
        **loop.save.args("save"),
        "save_only_model": t.save_only_model,
        "save_total_limit": loop.save_total_limit,
        **({"metric_for_best_model": "eval_loss", "greater_is_better": False} if loop.best_by_eval_loss else {}),
        "seed": t.seed,
        "data_seed": t.seed,
        "report_to": list(r.output.report_to) or ["none"],
        "run_name": r.output.run_name or r.name,
        "use_cpu": step.on_cpu,
        "disable_tqdm": True,  # the runner draws its own progress (runner/run/progress.py)
        "deepspeed": step.deepspeed_config,
        "tf32": loop.tf32,
        "ddp_timeout": r.hardware.distributed_timeout_minutes * 60,
    }
    if r.datasets.num_proc is not None and not kind.generates:  # GRPO/RLOO configs have no dataset_num_proc
        args["dataset_num_proc"] = r.datasets.num_proc
    if step.kernels == "liger":
        args["use_liger_kernel"] = True  # TRL turns off Liger's fused cross-entropy: its own fused LM head stays
    if step.world_size > 1 and step.on_cpu:
        args["ddp_backend"] = "gloo"
    if step.world_size > 1 and r.adapter.kind != "full" and step.deepspeed_config is None:
        args["ddp_find_unused_parameters"] = False  # frozen base weights never get gradients
    args.update(_objective_args(r, loop))
    return {k: v for k, v in args.items() if v is not None or k == "deepspeed"}


def _objective_args(r: Recipe, loop: Loop) -> dict[str, Any]:
    """The objective's own TRL arguments: its facts' `trl_args` (section fields) and `trl_constants`."""
    o, t, kind = r.objective, r.training, facts(r.objective.kind)
    args: dict[str, Any] = {}
    if not kind.generates:
        args["max_length"] = t.max_length
    if kind.packing:
        # packing is TRL's best-fit decreasing, which is padding-free; padding-free rows without packing are made by
        # the training process (TRL 1.16 would not truncate them to max_length: runner/run/trainer.py)
        args["packing"] = t.packing
    if o.kind == "sft":
        args.update(assistant_only_loss=loop.loss.assistant_only, completion_only_loss=loop.loss.completion_only)
    args.update(kind.trl_constants)
    for name, field in kind.trl_args:
        value = getattr(o, field)
        args[name] = list(value) if isinstance(value, (list, tuple)) else value
    if kind.generates:
        # TRL needs the global eval batch divisible by num_generations too
        args["per_device_eval_batch_size"] = o.num_generations
    return args


def peft_args(r: Recipe) -> Optional[dict[str, Any]]:
    """`{"class", "args"}` for the adapter's PEFT config, or None for full fine-tuning."""
    a = r.adapter
    if a.kind == "full":
        return None
    task_type = facts(r.objective.kind).peft_task_type
    if adapter_facts(a.kind).low_rank:
        args: dict[str, Any] = {
            "task_type": task_type,
            "r": a.r,
            "lora_alpha": a.alpha,
            "lora_dropout": a.dropout,
            "target_modules": a.target_modules if isinstance(a.target_modules, str) else list(a.target_modules),
            "bias": a.bias,
            "use_rslora": a.rslora,
            "use_dora": a.kind == "dora",
        }
        if a.modules_to_save:
            args["modules_to_save"] = list(a.modules_to_save)
        if a.kind == "dora" and a.ephemeral_gpu_offload:
            args["runtime_config"] = {"ephemeral_gpu_offload": True}
    elif a.kind == "prefix":
        args = {
            "task_type": task_type,
            "num_virtual_tokens": a.num_virtual_tokens,
            "prefix_projection": a.prefix_projection,
        }
        if a.encoder_hidden_size is not None:
            args["encoder_hidden_size"] = a.encoder_hidden_size
    elif a.kind == "prompt":
        args = {
            "task_type": task_type,
            "num_virtual_tokens": a.num_virtual_tokens,
            "prompt_tuning_init": a.init.upper(),
        }
        if a.init == "text":
            args.update(
                prompt_tuning_init_text=a.init_text, tokenizer_name_or_path=r.model.tokenizer or r.model.name_or_path
            )
    elif a.kind == "p-tuning":
        args = {
            "task_type": task_type,
            "num_virtual_tokens": a.num_virtual_tokens,
            "encoder_reparameterization_type": a.encoder_type,
            "encoder_hidden_size": a.encoder_hidden_size,
            "encoder_num_layers": a.encoder_num_layers,
            "encoder_dropout": a.encoder_dropout,
        }
    else:  # ia3
        args = {"task_type": task_type}
        if a.target_modules != "auto":
            args["target_modules"] = list(a.target_modules)
        if a.feedforward_modules != "auto":
            args["feedforward_modules"] = list(a.feedforward_modules)
    return {"class": adapter_facts(a.kind).peft_config, "args": args}


def quantization_args(r: Recipe, compute_dtype: str, storage: Optional[str]) -> Optional[dict[str, Any]]:
    """`{"class", "args"}` for transformers.BitsAndBytesConfig, or None; `storage` is the decided
    bnb_4bit_quant_storage of a 4-bit model (runner/plan/precision.py)."""
    q = r.quantization
    if q.method == "none":
        return None
    skip = list(q.skip_modules) or None
    if q.method == "bnb-8bit":
        args: dict[str, Any] = {"load_in_8bit": True}
    else:
        args = {
            "load_in_4bit": True,
            "bnb_4bit_quant_type": q.quant_type,
            "bnb_4bit_use_double_quant": q.double_quant,
            "bnb_4bit_compute_dtype": compute_dtype,
            "bnb_4bit_quant_storage": storage,
        }
    if skip:
        args["llm_int8_skip_modules"] = skip
    return {"class": "transformers.BitsAndBytesConfig", "args": args}
