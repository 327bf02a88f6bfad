"""Axolotl's training keys (batch, optimizer and schedule, sequence length and packing, loss masking, evaluation
and checkpoints, plugins) and its output keys -> recipe. Defaults are Axolotl's."""

from __future__ import annotations

from .hfargs import HF, max_steps, output_dir
from .translation import ImportRefused, Translation


def axolotl_training(t: Translation, world: int) -> None:
    """The training section, one group of keys at a time (the report lists them in this order)."""
    _axolotl_batch_size(t, world)
    _axolotl_optimization(t)
    _axolotl_sequences(t)
    _axolotl_loss(t)
    _schedules(t)
    _axolotl_run_settings(t)
    _axolotl_plugins(t)
    if t.has("save_only_model"):
        t.mapped("save_only_model", "training.save_only_model", bool(t.take("save_only_model")))


def _axolotl_batch_size(t: Translation, world: int) -> None:
    """micro_batch_size × gradient_accumulation_steps (or batch_size / micro_batch_size) × world size."""
    micro, accumulation = t.take("micro_batch_size", 1), t.take("gradient_accumulation_steps")
    batch_size = t.take("batch_size")
    if accumulation is None and batch_size:
        accumulation = max(batch_size // micro, 1)
        t.not_needed("batch_size", f"gradient accumulation {accumulation} = batch_size / micro_batch_size")
    t.batch("micro_batch_size", micro, "gradient_accumulation_steps", accumulation or 1, world)


def _axolotl_optimization(t: Translation) -> None:
    """Learning rate (Axolotl requires it), run length, scheduler, warmup and optimizer."""
    lr = t.take("learning_rate")
    if lr is None:
        raise ImportRefused("learning_rate is missing (Axolotl requires it)")
    t.mapped("learning_rate", "training.learning_rate", float(lr))
    t.defaulted("num_epochs", "training.epochs", 1, "Axolotl's default 1")
    max_steps(t)
    t.defaulted("lr_scheduler", "training.lr_scheduler", "cosine", "Axolotl's default (transformers' is linear)")
    if t.has("lr_scheduler_kwargs"):
        t.mapped("lr_scheduler_kwargs", "training.lr_scheduler_kwargs", t.take("lr_scheduler_kwargs"))
    if t.has("warmup_steps"):
        t.mapped("warmup_steps", "training.warmup_steps", t.take("warmup_steps"))
    elif t.has("warmup_ratio"):
        t.mapped("warmup_ratio", "training.warmup_ratio", t.take("warmup_ratio"))
    else:
        t.default(
            "warmup_steps",
            "training.warmup_ratio",
            0.03,
            "Axolotl warms up for 3% of the steps, at most 100: the cap is not carried (runs over 3,333 steps "
            "warm up longer here)",
        )
    t.defaulted("optimizer", "training.optimizer", "adamw_torch_fused", "Axolotl's default")
    t.defaulted("weight_decay", "training.weight_decay", 0.0, "Axolotl's default")
    t.defaulted("max_grad_norm", "training.max_grad_norm", HF["max_grad_norm"], "transformers' default")


def _axolotl_sequences(t: Translation) -> None:
    """Sequence length, packing and gradient checkpointing."""
    t.defaulted("sequence_len", "training.max_length", 512, "Axolotl's default 512 (the recipe's is 1024)")
    packing = t.take("sample_packing", False)
    t.given_or_default("sample_packing", "training.packing", bool(packing), "")
    if t.has("gradient_checkpointing"):
        t.mapped("gradient_checkpointing", "training.gradient_checkpointing", bool(t.take("gradient_checkpointing")))


def _axolotl_loss(t: Translation) -> None:
    """Which tokens train (train_on_inputs) and NEFTune, by objective."""
    train_on_inputs = t.take("train_on_inputs", False)
    if t.get("objective.kind") == "sft":
        if train_on_inputs:
            t.mapped("train_on_inputs", "objective.completion_only_loss", False, "the prompt trains too")
            t.put("objective.assistant_only_loss", False)
        else:
            t.given_or_default(
                "train_on_inputs",
                "objective.completion_only_loss",
                "auto",
                "false: only completions (and assistant turns) train, the recipe's `auto`",
            )
    elif t.has("train_on_inputs"):
        why = "raw text trains on every token" if t.get("objective.kind") == "pretrain" else "prompts never train here"
        t.not_needed("train_on_inputs", why)
    key, alpha = t.first_of("neftune_noise_alpha", "noisy_embedding_alpha")
    if alpha is not None and t.get("objective.kind") == "sft":
        t.mapped(key, "objective.neftune_noise_alpha", alpha)
    elif alpha is not None:
        t.dropped(key, "NEFTune applies to SFT in a recipe", alpha)


def _axolotl_run_settings(t: Translation) -> None:
    """Seed, logging interval and the distributed timeout."""
    t.defaulted("seed", "training.seed", 42, "Axolotl's default")
    if t.has("logging_steps"):
        t.mapped("logging_steps", "training.logging_every", t.take("logging_steps"))
    else:
        t.row(
            "logging_steps (unset)",
            "default",
            "training.logging_every",
            10,
            "Axolotl logs every 0.5% of the steps, at most 10: the recipe's 10",
        )
    t.timeout("ddp_timeout")


def _axolotl_plugins(t: Translation) -> None:
    """Liger's plugin becomes training.kernels; other plugins run Axolotl's own code and are dropped."""
    plugins = t.take("plugins") or []
    if any("liger" in str(p).lower() for p in plugins):
        t.mapped("plugins", "training.kernels", "liger", "Liger's kernels, applied through TRL's use_liger_kernel")
        for key in [k for k in t.source if k.startswith("liger_")]:
            t.take(key)
            t.not_needed(key, "the plan applies Liger's kernels for the model type as a whole")
    others = [p for p in plugins if "liger" not in str(p).lower()]
    if others:
        t.dropped("plugins", "Axolotl plugins run Axolotl's own code; a recipe has none", others)


def _schedules(t: Translation) -> None:
    for steps_key, per_epoch_key, strategy_key, what in (
        ("eval_steps", "evals_per_epoch", "eval_strategy", "eval"),
        ("save_steps", "saves_per_epoch", "save_strategy", "save"),
    ):
        steps, per_epoch, strategy = t.take(steps_key), t.take(per_epoch_key), t.take(strategy_key)
        if what == "eval" and (steps or per_epoch) and not t.evaluates():
            t.not_needed(
                steps_key if steps else per_epoch_key,
                "no eval data (val_set_size 0, no test_datasets): Axolotl does not evaluate",
            )
        elif steps is not None and steps >= 1:
            t.mapped(steps_key, f"training.{what}_every", int(steps))
        elif steps is not None:
            t.dropped(steps_key, "a fraction of the run: give evals/saves per epoch or steps", steps)
        elif per_epoch:
            t.mapped(per_epoch_key, f"training.{what}s_per_epoch", per_epoch)
        if strategy == "no" and what == "save":
            t.dropped(strategy_key, "a run always saves its result; checkpoints follow save_every or each epoch")
        elif strategy == "no" and not t.evaluates():
            t.not_needed(strategy_key, "no: there is no eval data either")
        elif strategy == "no":
            t.dropped(
                strategy_key,
                "with eval data the recipe evaluates (each epoch by default); drop the eval data to not evaluate",
            )
        elif strategy:
            t.not_needed(strategy_key, f"`{strategy}`: what the recipe does with the fields above")
    limit = t.take("save_total_limit")
    if limit:
        t.mapped("save_total_limit", "training.save_total_limit", limit)
    else:  # Axolotl: `save_total_limit or 4`, so 0 is 4 too
        t.default("save_total_limit", "training.save_total_limit", 4, "Axolotl keeps the last 4 checkpoints")


def axolotl_output(t: Translation) -> None:
    output_dir(t)
    reporters = []
    if t.has("wandb_project"):
        reporters.append("wandb")
        t.changed(
            "wandb_project",
            "output.report_to",
            ["wandb"],
            f"set WANDB_PROJECT={t.take('wandb_project')} in the environment (a recipe names no accounts)",
        )
    if t.has("use_tensorboard") and t.take("use_tensorboard"):
        reporters.append("tensorboard")
        t.mapped("use_tensorboard", "output.report_to", reporters)
    if reporters:
        t.put("output.report_to", reporters)
    if t.has("wandb_name"):
        t.mapped("wandb_name", "output.run_name", t.take("wandb_name"))
