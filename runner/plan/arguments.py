"""The exact keyword arguments for TRL's config classes, PEFT's adapter configs and BitsAndBytesConfig.

Names are the libraries' own, verbatim, so a reader can check them against their
docs; `tests/test_plan.py` checks every key against the installed classes.
"""

from __future__ import annotations

from typing import Any, Optional

from schemas import Recipe
from schemas.objectives import facts

PEFT_CLASSES = {
    "lora": "peft.LoraConfig",
    "dora": "peft.LoraConfig",
    "prefix": "peft.PrefixTuningConfig",
    "prompt": "peft.PromptTuningConfig",
    "p-tuning": "peft.PromptEncoderConfig",
    "ia3": "peft.IA3Config",
}


def trainer_args(
    r: Recipe,
    *,
    output_dir: str,
    precision: str,
    micro_batch_size: int,
    gradient_accumulation_steps: int,
    gradient_checkpointing: bool,
    world_size: int,
    on_cpu: bool,
    deepspeed_config: Optional[str],
    kernels: str = "none",
    tf32: Optional[bool] = None,
) -> dict[str, Any]:
    """Keyword arguments of the objective's TRL config class (a transformers.TrainingArguments subclass)."""
    t, o = r.training, r.objective
    evaluates = bool(r.datasets.eval or r.datasets.eval_fraction)
    args: dict[str, Any] = {
        "output_dir": output_dir,
        "num_train_epochs": t.epochs,
        "max_steps": t.max_steps if t.max_steps is not None else -1,
        "per_device_train_batch_size": micro_batch_size,
        "per_device_eval_batch_size": micro_batch_size,
        "gradient_accumulation_steps": gradient_accumulation_steps,
        "learning_rate": t.learning_rate,
        "lr_scheduler_type": t.lr_scheduler,
        "lr_scheduler_kwargs": dict(t.lr_scheduler_kwargs),
        # transformers 5 takes a ratio as a float below 1 in warmup_steps
        "warmup_steps": t.warmup_steps if t.warmup_steps is not None else (t.warmup_ratio or 0),
        "weight_decay": t.weight_decay,
        "optim": t.optimizer,
        "max_grad_norm": t.max_grad_norm,
        "bf16": precision == "bf16",
        "fp16": precision == "fp16",
        # transformers 5 names gradient checkpointing `activation_checkpointing` (the old name is a deprecated alias)
        "activation_checkpointing": gradient_checkpointing,
        "activation_checkpointing_kwargs": {"use_reentrant": False} if gradient_checkpointing else None,
        "logging_steps": t.logging_every,
        **(_schedule("eval", t.eval_every, t.evals_per_epoch, t.epochs) if evaluates else {"eval_strategy": "no"}),
        # one evaluation before the first step: the baseline every later number is compared with
        "eval_on_start": evaluates if t.eval_on_start == "auto" else t.eval_on_start,
        **_schedule("save", t.save_every, t.saves_per_epoch, t.epochs),
        "save_only_model": t.save_only_model,
        **checkpoint_retention(t, evaluates),
        "seed": t.seed,
        "data_seed": t.seed,
        "report_to": list(r.output.report_to) or ["none"],
        "run_name": r.output.run_name or r.name,
        "use_cpu": on_cpu,
        "disable_tqdm": True,  # the runner draws its own progress (runner/progress.py)
        "deepspeed": deepspeed_config,
        "tf32": tf32,
        "ddp_timeout": r.hardware.distributed_timeout_minutes * 60,
    }
    if r.datasets.num_proc is not None and not facts(o.kind).generates:  # GRPO/RLOO configs have no dataset_num_proc
        args["dataset_num_proc"] = r.datasets.num_proc
    if kernels == "liger":
        args["use_liger_kernel"] = True  # TRL turns off Liger's fused cross-entropy: its own fused LM head stays
    if world_size > 1 and on_cpu:
        args["ddp_backend"] = "gloo"
    if world_size > 1 and r.adapter.kind != "full" and deepspeed_config is None:
        args["ddp_find_unused_parameters"] = False  # frozen base weights never get gradients
    if o.kind in ("sft", "pretrain"):
        # packing is TRL's best-fit decreasing, which is padding-free; padding-free rows without packing are made by
        # the training process (TRL 1.16 would not truncate them to max_length: runner/run/trainer.py)
        args.update(max_length=t.max_length, packing=t.packing)
        if o.kind == "sft":
            assistant_only, completion_only, _ = sft_loss_scope(r)
            args.update(assistant_only_loss=assistant_only, completion_only_loss=completion_only)
            args["neftune_noise_alpha"] = o.neftune_noise_alpha
        else:
            args["dataset_text_field"] = "text"
    elif o.kind == "dpo":
        args.update(max_length=t.max_length, beta=o.beta, loss_type=list(o.loss), label_smoothing=o.label_smoothing)
        if o.loss_weights is not None:
            args["loss_weights"] = list(o.loss_weights)
    elif o.kind == "orpo":
        args.update(max_length=t.max_length, beta=o.beta)
    elif o.kind == "kto":
        args.update(
            max_length=t.max_length,
            beta=o.beta,
            desirable_weight=o.desirable_weight,
            undesirable_weight=o.undesirable_weight,
        )
    elif o.kind == "simpo":
        args.update(max_length=t.max_length, loss_type="simpo", beta=o.beta, simpo_gamma=o.gamma, cpo_alpha=o.cpo_alpha)
    elif o.kind == "cpo":
        args.update(
            max_length=t.max_length,
            loss_type=o.loss,
            beta=o.beta,
            cpo_alpha=o.cpo_alpha,
            label_smoothing=o.label_smoothing,
        )
    elif o.kind == "reward":
        args.update(max_length=t.max_length, center_rewards_coefficient=o.center_rewards_coefficient)
    elif facts(o.kind).generates:
        args.update(
            num_generations=o.num_generations,
            max_completion_length=o.max_completion_length,
            temperature=o.temperature,
            beta=o.beta,
        )
        # TRL needs the global eval batch divisible by num_generations too
        args["per_device_eval_batch_size"] = o.num_generations
        if o.generation_batch_size is not None:
            args["generation_batch_size"] = o.generation_batch_size
        if o.reward_weights is not None:
            args["reward_weights"] = list(o.reward_weights)
    return {k: v for k, v in args.items() if v is not None or k == "deepspeed"}


def _schedule(what: str, every: Optional[int], per_epoch: Optional[int], epochs: float) -> dict[str, Any]:
    """`{what}_strategy` and `{what}_steps` (what: eval or save): every N steps, N times per epoch, or per epoch.

    N times per epoch is a fraction of the run's steps, which transformers takes as an `*_steps` below 1 (the run's
    total steps times it, rounded up); once per epoch, or a run too short for the fraction, is the epoch strategy.
    """
    if every:
        return {f"{what}_strategy": "steps", f"{what}_steps": every}
    if per_epoch and per_epoch > 1 and per_epoch * epochs > 1:
        return {f"{what}_strategy": "steps", f"{what}_steps": 1 / (per_epoch * epochs)}
    return {f"{what}_strategy": "epoch"}


KEEP_LAST = 2  # checkpoints `save_total_limit: auto` keeps (plus the best by eval loss)


def checkpoint_retention(t, evaluates: bool) -> dict[str, Any]:
    """TrainingArguments for `training.save_total_limit`: the last checkpoints, and the best by eval loss."""
    if t.save_total_limit == "all":
        return {}
    if t.save_total_limit != "auto":
        return {"save_total_limit": t.save_total_limit}
    best = {"metric_for_best_model": "eval_loss", "greater_is_better": False} if evaluates else {}
    return {"save_total_limit": KEEP_LAST, **best}


def sft_data_family(r: Recipe) -> str:
    """conversation, prompt-completion or text: what an SFT recipe's sources hold (the first that is not text)."""
    families = [e.spec.family for e in (*r.datasets.train, *r.datasets.eval)]
    return next((f for f in families if f != "text"), "text")


def sft_loss_scope(r: Recipe) -> tuple[bool, bool, str]:
    """(assistant_only_loss, completion_only_loss, which tokens the loss is computed on) of an SFT recipe."""
    o, family = r.objective, sft_data_family(r)
    if family == "conversation":
        assistant = o.assistant_only_loss if o.assistant_only_loss != "auto" else True
        if assistant:
            return (
                True,
                False,
                "the assistant's turns, each with its end-of-turn token (not the user's or the template's)",
            )
        return False, False, "every token of each conversation: the user's turns and the template's tokens too"
    if family == "prompt-completion":
        completion = o.completion_only_loss if o.completion_only_loss != "auto" else True
        if completion:
            return False, True, "the completion of each prompt-completion row (not the prompt)"
        return False, False, "every token of each row: prompt and completion"
    return False, False, "every token of the text"


def trains_on(r: Recipe) -> str:
    """Which tokens the loss is computed on, in words, for the plan's decisions."""
    return sft_loss_scope(r)[2] if r.objective.kind == "sft" else facts(r.objective.kind).trains_on


def peft_args(r: Recipe) -> Optional[dict[str, Any]]:
    """`{"class", "args"}` for the adapter's PEFT config, or None for full fine-tuning."""
    a = r.adapter
    if a.kind == "full":
        return None
    task_type = "SEQ_CLS" if r.objective.kind == "reward" else "CAUSAL_LM"
    if a.kind in ("lora", "dora"):
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
    return {"class": PEFT_CLASSES[a.kind], "args": args}


def quantization_args(r: Recipe, compute_dtype: str, zero: Optional[int], load_dtype: str) -> Optional[dict[str, Any]]:
    """`{"class", "args"}` for transformers.BitsAndBytesConfig, or None."""
    q = r.quantization
    if q.method == "none":
        return None
    skip = list(q.skip_modules) or None
    if q.method == "bnb-8bit":
        args: dict[str, Any] = {"load_in_8bit": True}
    else:
        storage = q.quant_storage
        if storage == "auto":
            # ZeRO-3 shards the packed 4-bit weights with the rest of the model: they share its load dtype.
            storage = load_dtype if zero == 3 else "uint8"
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
