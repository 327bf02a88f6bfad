"""transformers' TrainingArguments keys, which LLaMA-Factory and TRL configs both use verbatim, with transformers'
defaults for the ones they leave out. Axolotl passes a few of them through unchanged (max_steps, output_dir), and
those read the same rule here."""

from __future__ import annotations

from .translation import Translation

# transformers' TrainingArguments defaults (LLaMA-Factory keeps them; TRL's config classes inherit them)
HF = {
    "learning_rate": 5e-5,
    "num_train_epochs": 3.0,
    "lr_scheduler_type": "linear",
    "weight_decay": 0.0,
    "max_grad_norm": 1.0,
    "optim": "adamw_torch_fused",
    "seed": 42,
    "logging_steps": 500,
    "per_device_train_batch_size": 8,
    "gradient_accumulation_steps": 1,
}

# TrainingArguments keys that change nothing a recipe trains, with the reason (shown in the report)
HARMLESS_ARGUMENTS = {
    "do_train": "a recipe trains",
    "overwrite_output_dir": "`recipe run --overwrite` replaces a finished run; the training is the same",
    "log_level": "logging detail, not training",
    "logging_strategy": "the recipe logs every training.logging_every steps",
    "push_to_hub": "publishing is not part of a run",
    "hub_model_id": "publishing is not part of a run",
    "per_device_eval_batch_size": "evaluation uses the training micro batch",
}


def training_arguments(t: Translation, world: int) -> None:
    """Batch arithmetic, schedule, optimizer, logging, evaluation and checkpoint keys of TrainingArguments."""
    micro = t.take("per_device_train_batch_size", HF["per_device_train_batch_size"])
    accumulation = t.take("gradient_accumulation_steps", HF["gradient_accumulation_steps"])
    t.batch("per_device_train_batch_size", micro, "gradient_accumulation_steps", accumulation, world)
    t.defaulted("learning_rate", "training.learning_rate", HF["learning_rate"], "transformers' default")
    t.put("training.learning_rate", float(t.get("training.learning_rate")))
    t.defaulted("num_train_epochs", "training.epochs", HF["num_train_epochs"], "transformers' default 3")
    max_steps(t)
    t.defaulted("lr_scheduler_type", "training.lr_scheduler", HF["lr_scheduler_type"], "transformers' default")
    if t.has("lr_scheduler_kwargs"):
        t.mapped("lr_scheduler_kwargs", "training.lr_scheduler_kwargs", t.take("lr_scheduler_kwargs"))
    if t.has("warmup_steps") and t.source["warmup_steps"]:
        t.mapped("warmup_steps", "training.warmup_steps", t.take("warmup_steps"))
        if t.take("warmup_ratio"):
            t.not_needed("warmup_ratio", "warmup_steps is set, and transformers takes it over the ratio")
    elif t.has("warmup_ratio"):
        t.mapped("warmup_ratio", "training.warmup_ratio", t.take("warmup_ratio"))
    t.take("warmup_steps")
    t.defaulted("optim", "training.optimizer", HF["optim"], "transformers' default with torch >= 2.8")
    t.defaulted("weight_decay", "training.weight_decay", HF["weight_decay"], "transformers' default")
    t.defaulted("max_grad_norm", "training.max_grad_norm", HF["max_grad_norm"], "transformers' default")
    if t.has("gradient_checkpointing"):
        t.mapped("gradient_checkpointing", "training.gradient_checkpointing", bool(t.take("gradient_checkpointing")))
    t.defaulted("seed", "training.seed", HF["seed"], "transformers' default")
    t.defaulted("logging_steps", "training.logging_every", HF["logging_steps"], "transformers' default")
    for what in ("eval", "save"):
        strategy = t.take(f"{what}_strategy", "steps" if what == "save" else "no")
        steps = t.take(f"{what}_steps", 500)
        if what == "eval" and not t.evaluates():
            if strategy != "no":
                t.dropped("eval_strategy", "the recipe has no eval data to evaluate on (see the dataset rows)")
            elif t.has("eval_strategy"):
                t.not_needed("eval_strategy", "no: there is no eval data either")
        elif strategy == "steps":
            t.given_or_default(f"{what}_steps", f"training.{what}_every", int(steps), "transformers' default 500")
            if t.has(f"{what}_strategy"):
                t.not_needed(f"{what}_strategy", f"steps: training.{what}_every says it")
        elif strategy == "epoch":
            t.mapped(f"{what}_strategy", f"training.{what}s_per_epoch", 1)
        elif strategy == "no" and what == "eval" and t.evaluates():
            t.changed(
                "eval_strategy" if t.has("eval_strategy") else "eval_strategy (unset)",
                "",
                None,
                "transformers never evaluates by default; with eval data the recipe evaluates each epoch",
            )
        elif strategy == "no" and what == "save":
            t.dropped("save_strategy", "a run saves checkpoints (each epoch, or every save_every steps)")
        if strategy != "steps" and t.has(f"{what}_steps"):
            t.not_needed(f"{what}_steps", f"unused: {what}_strategy is {strategy}")
    t.defaulted("save_total_limit", "training.save_total_limit", "all", "transformers keeps every checkpoint")
    if t.has("save_only_model"):
        t.mapped("save_only_model", "training.save_only_model", bool(t.take("save_only_model")))
    t.timeout("ddp_timeout")


def precision_arguments(t: Translation) -> None:
    """bf16 / fp16 (mixed precision; neither is float32) and tf32."""
    if t.take("bf16"):
        t.mapped("bf16", "model.dtype", "bfloat16")
    elif t.take("fp16"):
        t.mapped("fp16", "model.dtype", "float16")
    else:
        stated = [k for k in ("bf16", "fp16") if t.has(k)]
        t.given_or_default(
            stated[0] if stated else "bf16",
            "model.dtype",
            "float32",
            "neither bf16 nor fp16: transformers trains in float32",
        )
    t.given_or_default("tf32", "training.tf32", bool(t.take("tf32")), "transformers leaves TF32 off unless asked")


def output_arguments(t: Translation) -> None:
    """output_dir, report_to (`none` and `all` are the recipe's default: no tracker) and run_name."""
    output_dir(t)
    report = t.take("report_to")
    reporters = [r for r in ([report] if isinstance(report, str) else report or []) if r not in ("none", "all")]
    if reporters:
        t.mapped("report_to", "output.report_to", reporters)
    elif report is not None:
        t.not_needed("report_to", f"{report}: no tracker named")
    if t.has("run_name"):
        t.mapped("run_name", "output.run_name", t.take("run_name"))


def max_steps(t: Translation) -> None:
    """max_steps > 0 caps the run; 0 or -1 (transformers' default) leaves the run length to the epochs."""
    if (t.take("max_steps") or -1) > 0:
        t.mapped("max_steps", "training.max_steps", t.source["max_steps"])
    elif t.has("max_steps"):
        t.not_needed("max_steps", f"{t.source['max_steps']}: the run length is the epochs")


def output_dir(t: Translation) -> None:
    """output_dir, which a recipe resolves from where the run is started."""
    if t.has("output_dir"):
        t.changed("output_dir", "output.dir", t.take("output_dir"), "relative to where `recipe run` is started")
